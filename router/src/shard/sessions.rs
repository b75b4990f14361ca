//! Push/pull sessions on a shard: the configured programs with their client code, and which of
//! the shard's tunnels are sessions of which program. A session is a tunnel (its id is the
//! session id) detached between two push connections for up to `session_grace_ms`, in a cull
//! queue of its own since that grace differs from `tunnel_grace_ms`.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;
use crate::tunnel::TunnelId;

use super::{Shard, TunnelError};

/// A program of push/pull sessions, its client code read at start-up.
#[derive(Debug)]
pub struct Program {
    pub name: String,
    /// The client JavaScript, with `{session}` where the session id goes.
    pub client: Bytes,
    pub push_messages_max: u32,
    pub push_bytes_max: u64,
    pub push_ms_max: u64,
}

/// The `[programs.NAME]` of the configuration, by name.
#[derive(Debug, Default)]
pub struct Programs {
    by_name: HashMap<String, Arc<Program>>,
}

impl Programs {
    /// Reads every program's client file.
    ///
    /// # Errors
    /// A file that cannot be read, named with its program.
    pub fn load(config: &Config) -> io::Result<Programs> {
        let mut by_name = HashMap::new();
        for (name, p) in &config.programs {
            let client = std::fs::read(&p.client_file).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "programs.{name}.client_file: cannot read {}: {e}",
                        p.client_file
                    ),
                )
            })?;
            let program = Program {
                name: name.clone(),
                client: Bytes::from(client),
                push_messages_max: p.push_messages_max,
                push_bytes_max: p.push_bytes_max,
                push_ms_max: p.push_ms_max,
            };
            by_name.insert(name.clone(), Arc::new(program));
        }
        Ok(Programs { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Program>> {
        self.by_name.get(name)
    }
}

impl Shard {
    /// The program named `name`, if configured.
    pub fn program(&self, name: &str) -> Option<Arc<Program>> {
        self.programs.get(name).cloned()
    }

    /// Starts a session of `program`: a new tunnel, detached until its first push connection
    /// and culled if none comes within `session_grace_ms`.
    pub fn create_session(&self, program: &Arc<Program>) -> Result<TunnelId, TunnelError> {
        let id = self.create_tunnel_in(true)?;
        self.sessions.borrow_mut().insert(id.slot, program.clone());
        Ok(id)
    }

    /// The program of session `id`, when `id` is a live session of this shard.
    pub fn session_program(&self, id: &TunnelId) -> Option<Arc<Program>> {
        if !self.tunnel_exists(id) {
            return None;
        }
        self.sessions.borrow().get(&id.slot).cloned()
    }

    /// True when the tunnel in `slot` is a session (it waits `session_grace_ms` detached).
    pub(super) fn is_session_slot(&self, slot: u32) -> bool {
        let sessions = self.sessions.borrow();
        !sessions.is_empty() && sessions.contains_key(&slot)
    }

    /// Forgets the sessions of culled tunnels.
    pub(super) fn forget_sessions(&self, slots: &[u32]) {
        let mut sessions = self.sessions.borrow_mut();
        if sessions.is_empty() {
            return;
        }
        for slot in slots {
            sessions.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Auth;
    use crate::shard::clock::{Clock, ManualClock};
    use crate::shard::{settings, Shared};
    use crate::wire::format::Formats;
    use std::rc::Rc;

    fn program() -> Arc<Program> {
        Arc::new(Program {
            name: "prog".to_owned(),
            client: Bytes::from_static(b"go('{session}')"),
            push_messages_max: 1,
            push_bytes_max: 0,
            push_ms_max: 30_000,
        })
    }

    fn shard(manual: &Arc<ManualClock>) -> Rc<Shard> {
        let programs = Programs {
            by_name: HashMap::from([("prog".to_owned(), program())]),
        };
        let shared = Arc::new(Shared::new(
            1,
            settings::Settings {
                config: Config::default(),
                formats: Formats::default(),
                auth: Arc::new(Auth::open()),
                programs: Arc::new(programs),
                tls: None,
            },
        ));
        let clock = Clock::Manual {
            clock: manual.clone(),
            shard: 0,
        };
        Shard::with_clock(
            0,
            shared,
            vec![None],
            Arc::from(vec![Default::default()]),
            clock,
        )
    }

    /// Moves the clock to `to_ms` and runs the timers there, as the timer task would.
    fn run_at(shard: &Shard, manual: &Arc<ManualClock>, to_ms: u64) -> (u64, u64) {
        let manual = manual.clone();
        let by_ms = to_ms - shard.now_ms();
        let moved = std::thread::spawn(move || manual.advance(by_ms));
        while shard.now_ms() < to_ms {
            std::thread::yield_now();
        }
        let ran = shard.run_timers();
        assert!(moved.join().expect("advance returns"));
        ran
    }

    #[test]
    fn a_session_waits_its_own_grace_and_is_forgotten_when_culled() {
        let manual = Arc::new(ManualClock::new(1));
        let shard = shard(&manual);
        let config = shard.config();
        let (tunnel_grace_ms, session_grace_ms) = (config.tunnel_grace_ms, config.session_grace_ms);
        assert!(tunnel_grace_ms < session_grace_ms, "the defaults differ");
        let program = shard.program("prog").expect("configured");
        assert!(shard.program("other").is_none());
        let session = shard.create_session(&program).expect("room");
        let tunnel = shard.create_tunnel().expect("room");
        assert_eq!(
            shard.session_program(&session).map(|p| p.name.clone()),
            Some("prog".to_owned())
        );
        assert!(shard.session_program(&tunnel).is_none(), "not a session");
        // The ordinary tunnel goes at its grace; the session waits for its own.
        assert_eq!(
            run_at(&shard, &manual, tunnel_grace_ms),
            (tunnel_grace_ms, session_grace_ms)
        );
        assert!(!shard.tunnel_exists(&tunnel));
        assert!(shard.tunnel_exists(&session));
        // A push connection that comes and goes starts the grace again from its end.
        shard.attach(&session, 7);
        shard.detach(&session, 7);
        let end_ms = tunnel_grace_ms + session_grace_ms;
        assert_eq!(
            run_at(&shard, &manual, session_grace_ms),
            (session_grace_ms, end_ms)
        );
        assert!(shard.tunnel_exists(&session));
        assert_eq!(run_at(&shard, &manual, end_ms), (end_ms, u64::MAX));
        assert!(!shard.tunnel_exists(&session));
        assert!(shard.session_program(&session).is_none());
        assert!(shard.sessions.borrow().is_empty(), "forgotten");
        // Its slot goes to the next tunnel, which is no session.
        let next = shard.create_tunnel().expect("room");
        assert_eq!(next.slot, session.slot);
        assert!(shard.session_program(&next).is_none());
    }
}
