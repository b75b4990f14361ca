//! Why a request or a client message is refused: one type, and the one place that maps each
//! reason to its HTTP status, its error text, its WebSocket close code, its metrics label and
//! who caused it. Handlers return a [`Refusal`] instead of writing a status and a text.

use crate::auth::TokenError;
use crate::pubsub::path::PathError;
use crate::shard::{PublishError, TunnelError};
use crate::wire::http1::HttpError;
use crate::wire::json::JsonError;

/// Who a refusal is due to: the client's request, or the server's own state or limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Server,
}

macro_rules! refusals {
    ($($variant:ident $(($field:ty))? => $label:literal),* $(,)?) => {
        /// Why something was refused. Every variant has a fixed metrics label (never a
        /// client-chosen value).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Refusal { $($variant $(($field))?,)* }

        impl Refusal {
            /// The metrics label of every reason, in [`Refusal::index`] order.
            pub const LABELS: &'static [&'static str] = &[$($label,)*];

            /// The reason's position in [`Refusal::LABELS`].
            pub fn index(self) -> usize {
                #[allow(non_camel_case_types, clippy::upper_case_acronyms, reason = "one constant per variant")]
                enum Index { $($variant,)* }
                match self { $(refusals!(@pattern $variant $(($field))?) => Index::$variant as usize,)* }
            }
        }
    };
    (@pattern $variant:ident ($field:ty)) => { Refusal::$variant(_) };
    (@pattern $variant:ident) => { Refusal::$variant };
}

refusals! {
    // The request could not be read (framing, size, timeouts), or went unfinished.
    Http(HttpError) => "http",
    // Routing and query.
    NotFound => "not_found",
    BadQuery => "bad_query",
    BadCallback => "bad_callback",
    // Opening a tunnel.
    MissingFormat => "missing_format",
    UnknownFormat => "unknown_format",
    JsonpNeedsCallback => "jsonp_needs_callback",
    FormatNeedsCallback => "format_needs_callback",
    BadTtl => "bad_ttl",
    // Fields of events, subscriptions and WebSocket messages.
    Json(JsonError) => "bad_json",
    JsonTooDeep => "json_too_deep",
    MissingTunnel => "missing_tunnel",
    MissingPath => "missing_path",
    MissingData => "missing_data",
    MissingType => "missing_type",
    UnknownMessageType => "unknown_message_type",
    BinaryNeedsTarget => "binary_needs_target",
    BadPath(PathError) => "bad_path",
    PrivatePath => "private_path",
    DataTooLarge => "data_too_large",
    UnknownTunnel => "unknown_tunnel",
    TooManySubscriptions => "too_many_subscriptions",
    RateLimited => "rate_limited",
    // Talk messages (`POST /push`).
    TalkEmpty => "talk_empty",
    TalkNul => "talk_nul",
    // Push/pull sessions.
    UnknownProgram => "unknown_program",
    UnknownSession => "unknown_session",
    SessionsNeedNoTokens => "sessions_need_no_tokens",
    // The backend publish API.
    PublishNotLoopback => "publish_not_loopback",
    PublishFromBrowser => "publish_from_browser",
    PublishKeyInvalid => "publish_key_invalid",
    // Who may open, re-attach, subscribe and publish (`[auth]`).
    Token(TokenError) => "token",
    TokenExpired => "token_expired",
    PathNotAllowed => "path_not_allowed",
    TunnelNotYours => "tunnel_not_yours",
    TunnelsPerUser => "tunnels_per_user",
    OriginNotAllowed => "origin_not_allowed",
    Admission => "admission",
    TokensOff => "tokens_off",
    // The server's own limits and state.
    TooManyTunnels => "too_many_tunnels",
    RingFull => "ring_full",
    Draining => "draining",
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Http(e) => e.status(),
            Refusal::NotFound
            | Refusal::UnknownTunnel
            | Refusal::UnknownProgram
            | Refusal::UnknownSession => 404,
            Refusal::SessionsNeedNoTokens => 501,
            Refusal::Token(_) | Refusal::TokenExpired | Refusal::PublishKeyInvalid => 401,
            Refusal::PrivatePath
            | Refusal::PublishNotLoopback
            | Refusal::PublishFromBrowser
            | Refusal::PathNotAllowed
            | Refusal::TunnelNotYours
            | Refusal::OriginNotAllowed => 403,
            Refusal::DataTooLarge => 413,
            Refusal::TooManySubscriptions | Refusal::RateLimited | Refusal::TunnelsPerUser => 429,
            Refusal::TooManyTunnels
            | Refusal::RingFull
            | Refusal::Draining
            | Refusal::Admission => 503,
            Refusal::BadQuery
            | Refusal::BadCallback
            | Refusal::MissingFormat
            | Refusal::UnknownFormat
            | Refusal::JsonpNeedsCallback
            | Refusal::FormatNeedsCallback
            | Refusal::BadTtl
            | Refusal::Json(_)
            | Refusal::JsonTooDeep
            | Refusal::MissingTunnel
            | Refusal::MissingPath
            | Refusal::MissingData
            | Refusal::MissingType
            | Refusal::UnknownMessageType
            | Refusal::BinaryNeedsTarget
            | Refusal::BadPath(_)
            | Refusal::TalkEmpty
            | Refusal::TalkNul
            | Refusal::TokensOff => 400,
        }
    }

    /// The error text of the JSON answer (`{"ok":false,"error":...}`, or a WebSocket
    /// `{"type":"error","error":...}`). Never contains request bytes.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Http(e) => e.message(),
            Refusal::NotFound => "not found",
            Refusal::BadQuery => "invalid percent-encoding in query",
            Refusal::BadCallback => "invalid callback name",
            Refusal::MissingFormat => "missing format",
            Refusal::UnknownFormat => "unknown format",
            Refusal::JsonpNeedsCallback => "jsonp needs a cb parameter",
            Refusal::FormatNeedsCallback => "this format needs a cb parameter",
            Refusal::BadTtl => "ttl must be a number of milliseconds",
            Refusal::Json(e) => e.message(),
            Refusal::JsonTooDeep => JsonError::TooDeep.message(),
            Refusal::MissingTunnel => "missing tunnel",
            Refusal::MissingPath => "missing path",
            Refusal::MissingData => "missing data",
            Refusal::MissingType => "missing type",
            Refusal::UnknownMessageType => "unknown message type",
            Refusal::BinaryNeedsTarget => {
                "binary data needs a target: send {\"type\":\"target\",\"path\":P}"
            }
            Refusal::BadPath(e) => e.message(),
            Refusal::PrivatePath => "path is private",
            Refusal::DataTooLarge => "data too large",
            Refusal::UnknownTunnel => "unknown tunnel",
            Refusal::TooManySubscriptions => "too many subscriptions",
            Refusal::RateLimited => "rate limit exceeded",
            Refusal::TalkEmpty => {
                "a Talk message may not be empty (an empty message is a keepalive)"
            }
            Refusal::TalkNul => "a Talk message may not contain a NUL byte (NUL ends a message)",
            Refusal::UnknownProgram => "unknown program",
            Refusal::UnknownSession => "unknown session",
            Refusal::SessionsNeedNoTokens => {
                "push/pull sessions are not served when tokens are required (auth.mode = jwt)"
            }
            Refusal::PublishNotLoopback => "publishing is only open to loopback peers",
            Refusal::PublishFromBrowser => {
                "publishing is not open to browsers (the request has an Origin)"
            }
            Refusal::PublishKeyInvalid => "a publisher key is required (Authorization: Bearer)",
            Refusal::Token(e) => e.message(),
            Refusal::TokenExpired => TokenError::Expired.message(),
            Refusal::PathNotAllowed => "the token does not allow this path",
            Refusal::TunnelNotYours => "the token's user does not own this tunnel",
            Refusal::TunnelsPerUser => "too many tunnels for this user",
            Refusal::OriginNotAllowed => "origin not allowed",
            Refusal::Admission => "too many new tunnels right now; retry later",
            Refusal::TokensOff => "this router does not use tokens (auth.mode is none)",
            Refusal::TooManyTunnels => "too many tunnels",
            Refusal::RingFull => "shard ring full",
            Refusal::Draining => "draining: the router is about to exit",
        }
    }

    /// The close code when the refusal ends a WebSocket connection (RFC 6455 §7.4.1). Most
    /// refusals of a WebSocket message answer an error message and keep the tunnel; a limit
    /// that bounds what the server must hold in memory closes it.
    pub fn close_code(self) -> u16 {
        match self {
            Refusal::JsonTooDeep | Refusal::DataTooLarge => 1009,
            Refusal::TooManyTunnels | Refusal::RingFull | Refusal::Admission => 1013,
            Refusal::Draining => 1012,
            _ => 1008,
        }
    }

    /// Who caused it.
    pub fn blame(self) -> Blame {
        match self {
            Refusal::TooManyTunnels
            | Refusal::RingFull
            | Refusal::Draining
            | Refusal::Admission => Blame::Server,
            _ => Blame::Client,
        }
    }

    /// Counts it by its reason, and as the server's doing when it is (every refusal, answered
    /// or sent as a WebSocket message).
    pub fn count(self, metrics: &crate::metrics::Metrics) {
        metrics.refused(self.index());
        if self.blame() == Blame::Server {
            crate::metrics::Metrics::add(&metrics.refused_by_server, 1);
        }
    }
}

impl From<TunnelError> for Refusal {
    fn from(e: TunnelError) -> Refusal {
        match e {
            TunnelError::Unknown => Refusal::UnknownTunnel,
            TunnelError::ShardFull => Refusal::TooManyTunnels,
            TunnelError::SubscriptionLimit => Refusal::TooManySubscriptions,
            TunnelError::RateLimited => Refusal::RateLimited,
            TunnelError::PrivatePath => Refusal::PrivatePath,
            TunnelError::UserLimit => Refusal::TunnelsPerUser,
            TunnelError::RingFull => Refusal::RingFull,
        }
    }
}

impl Refusal {
    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
    pub fn challenge(self) -> Option<&'static str> {
        match self {
            Refusal::Token(TokenError::Missing) | Refusal::PublishKeyInvalid => Some("Bearer"),
            Refusal::Token(_) => Some("Bearer error=\"invalid_token\""),
            Refusal::TokenExpired => {
                Some("Bearer error=\"invalid_token\", error_description=\"token expired\"")
            }
            _ => None,
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Refusal {
        match e {
            // Counted apart: expiry is the one a client fixes by itself, with a fresh token.
            TokenError::Expired => Refusal::TokenExpired,
            e => Refusal::Token(e),
        }
    }
}

impl From<PublishError> for Refusal {
    fn from(e: PublishError) -> Refusal {
        match e {
            PublishError::RingFull => Refusal::RingFull,
            PublishError::UnknownTunnel => Refusal::UnknownTunnel,
        }
    }
}

impl From<JsonError> for Refusal {
    fn from(e: JsonError) -> Refusal {
        match e {
            JsonError::TooDeep => Refusal::JsonTooDeep,
            JsonError::Invalid(_) => Refusal::Json(e),
        }
    }
}

impl From<PathError> for Refusal {
    fn from(e: PathError) -> Refusal {
        Refusal::BadPath(e)
    }
}

impl From<HttpError> for Refusal {
    fn from(e: HttpError) -> Refusal {
        Refusal::Http(e)
    }
}

// Every reason has its counter in the shard's metrics.
const _: () = assert!(Refusal::LABELS.len() <= crate::metrics::REFUSAL_REASONS_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_label_and_index() {
        let samples = [
            Refusal::Http(HttpError::Timeout),
            Refusal::NotFound,
            Refusal::Json(JsonError::Invalid("x")),
            Refusal::JsonTooDeep,
            Refusal::BadPath(PathError::Empty),
            Refusal::RingFull,
        ];
        for r in samples {
            assert!(Refusal::LABELS.get(r.index()).is_some(), "{r:?}");
        }
        assert_eq!(Refusal::LABELS[Refusal::RingFull.index()], "ring_full");
        assert_eq!(
            Refusal::LABELS[Refusal::Http(HttpError::Timeout).index()],
            "http"
        );
        let mut labels = Refusal::LABELS.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::LABELS.len());
    }

    #[test]
    fn statuses_texts_and_blame() {
        assert_eq!(Refusal::from(TunnelError::ShardFull).status(), 503);
        assert_eq!(Refusal::from(TunnelError::ShardFull).blame(), Blame::Server);
        assert_eq!(Refusal::from(PublishError::UnknownTunnel).status(), 404);
        assert_eq!(Refusal::from(JsonError::TooDeep), Refusal::JsonTooDeep);
        assert_eq!(Refusal::JsonTooDeep.close_code(), 1009);
        assert_eq!(
            Refusal::from(PathError::TooLong).message(),
            "path is longer than 255 bytes"
        );
        assert_eq!(Refusal::Http(HttpError::BodyTooLarge).status(), 413);
        assert_eq!(Refusal::RateLimited.blame(), Blame::Client);
    }

    #[test]
    fn counts_by_reason() {
        let metrics = crate::metrics::Metrics::default();
        metrics.refused(Refusal::NotFound.index());
        metrics.refused(Refusal::NotFound.index());
        metrics.refused(Refusal::RingFull.index());
        let seen: Vec<_> = metrics
            .refusals(Refusal::LABELS)
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(seen, vec![("not_found", 2), ("ring_full", 1)]);
    }
}
