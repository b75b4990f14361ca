//! Path validation and subscription patterns (`/a/b` exact, `/a/*` for `/a` and everything below).

use std::fmt;

/// Most segments a path may have.
pub const PATH_SEGMENTS_MAX: usize = 16;
/// Most bytes a path may have.
pub const PATH_BYTES_MAX: usize = 255;
/// Prefix of every tunnel's private path, `/tunnel/<id>`.
pub const PRIVATE_PREFIX: &str = "/tunnel/";

/// Why a path or pattern was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Empty,
    NoLeadingSlash,
    EmptySegment,
    BadByte,
    TooManySegments,
    TooLong,
}

impl PathError {
    /// Short text for error answers; never contains the path.
    pub fn message(self) -> &'static str {
        match self {
            PathError::Empty => "path is empty",
            PathError::NoLeadingSlash => "path must start with '/'",
            PathError::EmptySegment => "path has an empty segment",
            PathError::BadByte => "path segments may only hold A-Z a-z 0-9 . _ ~ -",
            PathError::TooManySegments => "path has more than 16 segments",
            PathError::TooLong => "path is longer than 255 bytes",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

fn segment_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// Checks that `path` is `/` followed by 1..=16 segments of `[A-Za-z0-9._~-]+`, at most 255 bytes.
pub fn validate(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes.len() > PATH_BYTES_MAX {
        return Err(PathError::TooLong);
    }
    let rest = path.strip_prefix('/').ok_or(PathError::NoLeadingSlash)?;
    let mut segments = 0usize;
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if !segment.bytes().all(segment_byte_ok) {
            return Err(PathError::BadByte);
        }
        segments += 1;
        if segments > PATH_SEGMENTS_MAX {
            return Err(PathError::TooManySegments);
        }
    }
    Ok(())
}

/// True when `path` is somebody's private path `/tunnel/<id>`.
pub fn is_private(path: &str) -> bool {
    path == "/tunnel" || path.starts_with(PRIVATE_PREFIX)
}

/// What a tunnel subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Exactly this path.
    Exact(Box<str>),
    /// This path and every path below it; `""` is the root (`/*`: every path).
    Subtree(Box<str>),
}

impl Pattern {
    /// Parses `P` or `P/*` (and `/*`, everything).
    pub fn parse(text: &str) -> Result<Pattern, PathError> {
        if text == "/*" {
            return Ok(Pattern::Subtree("".into()));
        }
        match text.strip_suffix("/*") {
            Some(base) => {
                validate(base)?;
                Ok(Pattern::Subtree(base.into()))
            }
            None => {
                validate(text)?;
                Ok(Pattern::Exact(text.into()))
            }
        }
    }

    /// The path part the registry indexes this pattern by.
    pub fn key(&self) -> &str {
        match self {
            Pattern::Exact(p) | Pattern::Subtree(p) => p,
        }
    }

    /// True when a datagram published on `path` reaches this pattern.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(p) => &**p == path,
            Pattern::Subtree(p) => {
                path.starts_with(&**p)
                    && (path.len() == p.len() || path.as_bytes().get(p.len()) == Some(&b'/'))
            }
        }
    }

    /// True when the pattern reaches into the private `/tunnel/...` namespace.
    pub fn touches_private(&self) -> bool {
        match self {
            Pattern::Exact(p) => is_private(p),
            // Private datagrams bypass the registry, so `/*` never sees them.
            Pattern::Subtree(p) => is_private(p),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(p) => f.write_str(p),
            Pattern::Subtree(p) => write!(f, "{p}/*"),
        }
    }
}

/// The subtree keys under which subscriptions reaching `path` are indexed:
/// `/a/b/c` yields `/a/b/c`, `/a/b`, `/a` and `""` (the root).
pub fn subtree_keys(path: &str) -> impl Iterator<Item = &str> {
    let mut end = Some(path.len());
    std::iter::from_fn(move || {
        let current = end?;
        let key = path.get(..current)?;
        end = if current == 0 {
            None
        } else {
            Some(key.rfind('/').unwrap_or(0))
        };
        Some(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_paths() {
        assert_eq!(validate("/chat/room1"), Ok(()));
        assert_eq!(validate("/a.b_c~d-e/F9"), Ok(()));
        assert_eq!(validate(""), Err(PathError::Empty));
        assert_eq!(validate("/"), Err(PathError::EmptySegment));
        assert_eq!(validate("chat"), Err(PathError::NoLeadingSlash));
        assert_eq!(validate("/chat/"), Err(PathError::EmptySegment));
        assert_eq!(validate("/a//b"), Err(PathError::EmptySegment));
        assert_eq!(validate("/a b"), Err(PathError::BadByte));
        assert_eq!(validate("/a/*"), Err(PathError::BadByte));
        assert_eq!(validate("/é"), Err(PathError::BadByte));
    }

    #[test]
    fn segment_and_length_bounds() {
        let sixteen = "/a".repeat(16);
        assert_eq!(validate(&sixteen), Ok(()));
        assert_eq!(validate(&"/a".repeat(17)), Err(PathError::TooManySegments));
        let exact = format!("/{}", "x".repeat(254));
        assert_eq!(exact.len(), 255);
        assert_eq!(validate(&exact), Ok(()));
        let over = format!("/{}", "x".repeat(255));
        assert_eq!(validate(&over), Err(PathError::TooLong));
    }

    #[test]
    fn patterns_match_subtrees() {
        let p = Pattern::parse("/chat/*").unwrap();
        assert!(p.matches("/chat"));
        assert!(p.matches("/chat/room1"));
        assert!(p.matches("/chat/room1/x"));
        assert!(!p.matches("/chatter"));
        assert!(!p.matches("/cha"));
        let all = Pattern::parse("/*").unwrap();
        assert!(all.matches("/anything/at/all"));
        let exact = Pattern::parse("/chat").unwrap();
        assert!(exact.matches("/chat"));
        assert!(!exact.matches("/chat/room1"));
        assert_eq!(Pattern::parse("/chat/**"), Err(PathError::BadByte));
        assert_eq!(p.to_string(), "/chat/*");
    }

    #[test]
    fn private_paths() {
        assert!(Pattern::parse("/tunnel/abc").unwrap().touches_private());
        assert!(Pattern::parse("/tunnel/*").unwrap().touches_private());
        assert!(!Pattern::parse("/*").unwrap().touches_private());
        assert!(!Pattern::parse("/tunnels").unwrap().touches_private());
    }

    #[test]
    fn subtree_keys_walk_up_to_root() {
        let keys: Vec<&str> = subtree_keys("/a/b/c").collect();
        assert_eq!(keys, vec!["/a/b/c", "/a/b", "/a", ""]);
        let keys: Vec<&str> = subtree_keys("/a").collect();
        assert_eq!(keys, vec!["/a", ""]);
    }
}
