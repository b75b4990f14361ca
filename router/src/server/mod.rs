//! Bootstrap: one thread per shard, each with its own monoio runtime (io_uring, or epoll where
//! io_uring is unavailable) and its own SO_REUSEPORT listener; the mesh is wired before serving.
//! [`service`] runs a started server under a service manager: readiness, signals, drain.

pub mod service;
pub mod tls;

use crate::limits::{
    ACCEPT_RETRY_MS, LISTEN_BACKLOG, MESH_BATCH_MAX, PORT_RETRY_MS, PORT_WAIT_MS, STOP_POLL_MS,
    STOP_WAIT_MS, TIMER_SLEEP_MS_MAX, USERS_PERIOD_MS,
};
use bytes::BytesMut;
use monoio::net::TcpListener;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::Auth;
use crate::config::{Config, IoDriver};
use crate::conn;
use crate::metrics::Metrics;
use crate::shard::clock::{Clock, ManualClock};
use crate::shard::mesh::{self, MeshEnd, ShardMsg};
use crate::shard::sessions::Programs;
use crate::shard::settings::Settings;
use crate::shard::stop::{Ending, Stop};
use crate::shard::{Shard, Shared};
use crate::wire::format::{CustomFormat, Formats};
use crate::wire::template::Template;

/// A running router.
pub struct Server {
    /// The address every shard listens on.
    pub addr: SocketAddr,
    /// The TLS listener's address (`[tls]`), when there is one.
    pub tls_addr: Option<SocketAddr>,
    /// The I/O driver the shard runtimes use: `io_uring`, or `epoll` (configured, or the
    /// fallback where io_uring cannot be set up).
    pub io_driver: &'static str,
    pub shared: Arc<Shared>,
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
    manual_clock: Option<Arc<ManualClock>>,
}

impl Server {
    /// The clock a test moves, when the server was started with
    /// [`start_with_manual_clock`].
    pub fn manual_clock(&self) -> Option<Arc<ManualClock>> {
        self.manual_clock.clone()
    }

    /// Waits for the shard threads: they run until the server is stopped (or the process ends).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Stops every shard and waits for its thread. Each shard closes its listener, ends its
    /// connections (a stream gets its terminating chunk, a parked poll its answer, a WebSocket
    /// close 1001, an idle connection its close), waits up to `STOP_WAIT_MS` for them, and
    /// drops its tunnels.
    pub fn stop(self) {
        self.stop.stop(Ending::Stop, STOP_WAIT_MS);
        self.join();
    }

    /// Drains before the process exits: as [`Server::stop`], but a WebSocket closes 1012
    /// (service restart) and an SSE stream gets a `retry:` hint with jitter before its
    /// terminating chunk; `/readyz` answers 503 on the connections still open. Returns once
    /// every connection is gone, or after `wait_ms`.
    pub fn drain(self, wait_ms: u64) {
        self.stop.stop(Ending::Drain, wait_ms);
        self.join();
    }
}

/// Builds the custom formats of the configuration.
pub(crate) fn custom_formats(config: &Config) -> io::Result<Formats> {
    let mut formats = Vec::new();
    for (name, f) in &config.formats {
        let parse = |text: &str| {
            Template::parse(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        formats.push(CustomFormat {
            name: name.clone(),
            content_type: f.content_type.clone(),
            header: parse(&f.header)?,
            envelope: parse(&f.envelope)?,
            keepalive: parse(&f.keepalive)?,
            footer: parse(&f.footer)?,
            html_escape: f.html_escape,
        });
    }
    Ok(Formats::new(formats))
}

/// Binds one SO_REUSEPORT listener per shard on the configured address (the first one picks
/// the port when it is 0) and starts the shard threads.
pub fn start(config: Config) -> io::Result<Server> {
    start_on(config, false)
}

/// As [`start`], but every shard measures its deadlines (keepalives, long-poll ttls, the grace
/// of detached tunnels, event rate limits) on one [`ManualClock`] that only moves when the
/// caller advances it ([`Server::manual_clock`]): tests check timeouts without waiting for
/// them. Timeouts about real sockets stay on real time (see `docs/architecture.md`, "Time").
pub fn start_with_manual_clock(config: Config) -> io::Result<Server> {
    start_on(config, true)
}

fn start_on(config: Config, manual: bool) -> io::Result<Server> {
    let shard_count = config.shards.max(1);
    let manual_clock = manual.then(|| Arc::new(ManualClock::new(shard_count)));
    let formats = custom_formats(&config)?;
    let programs = Arc::new(Programs::load(&config)?);
    let auth =
        Auth::load(&config.auth).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if auth.tokens_required() {
        tracing::info!(keys = auth.key_count(), "auth: tokens (JWT) required");
    } else {
        tracing::warn!("auth.mode = \"none\": anyone who reaches the router may open tunnels");
    }
    let tls = tls::load(&config.tls).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut addr = config.listen_addr();
    refuse_port_in_use(addr)?;
    let mut listeners = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        let listener = bind_reuseport(addr)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    // The TLS listener, one per shard too.
    let mut tls_addr = config.tls.listen_addr().filter(|_| tls.is_some());
    let mut tls_listeners: Vec<Option<std::net::TcpListener>> = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        match tls_addr {
            Some(at) => {
                if tls_listeners.is_empty() {
                    refuse_port_in_use(at)?;
                }
                let listener = bind_reuseport(at)?;
                tls_addr = Some(listener.local_addr()?);
                tls_listeners.push(Some(listener));
            }
            None => tls_listeners.push(None),
        }
    }
    match config.io_driver {
        IoDriver::Auto if !monoio::utils::detect_uring() => {
            tracing::warn!("io_uring is unavailable; falling back to the epoll driver");
        }
        IoDriver::Uring if !monoio::utils::detect_uring() => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_driver = \"uring\" but io_uring cannot be set up here",
            ));
        }
        _ => {}
    }
    let ends = mesh::build(shard_count, config.shard_ring_slots);
    let auth = Arc::new(auth);
    let shared = Arc::new(Shared::new(
        shard_count,
        Settings {
            config,
            formats,
            auth,
            tls,
            programs,
        },
    ));
    let stop = Arc::new(Stop::new(shard_count));
    let mut threads = Vec::with_capacity(shard_count);
    // Each shard says which driver its runtime got (or why it has none) before it serves.
    let (drivers, started) = std::sync::mpsc::channel();
    let shard_listeners = listeners.into_iter().zip(tls_listeners);
    for (i, ((listener, tls_listener), end)) in shard_listeners.zip(ends).enumerate() {
        let shared = shared.clone();
        let shard_stop = stop.clone();
        let driver = drivers.clone();
        let manual_clock = manual_clock.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                // The monotonic clock starts on the shard's own thread, as the shard does.
                let clock = match manual_clock {
                    Some(clock) => Clock::Manual { clock, shard: i },
                    None => Clock::monotonic(),
                };
                let listeners = (listener, tls_listener);
                run_shard(i as u16, shared, listeners, end, &shard_stop, driver, clock)
            });
        match thread {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                abandon(&stop, threads);
                return Err(e);
            }
        }
    }
    drop(drivers);
    let mut io_driver = "io_uring";
    for _ in 0..shard_count {
        match started.recv() {
            Ok(Ok("epoll")) => io_driver = "epoll",
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                abandon(&stop, threads);
                return Err(e);
            }
            Err(_) => break,
        }
    }
    Ok(Server {
        addr,
        tls_addr,
        io_driver,
        shared,
        stop,
        threads,
        manual_clock,
    })
}

/// Stops the shards a failed start-up has started, and waits for their threads.
fn abandon(stop: &Stop, threads: Vec<JoinHandle<()>>) {
    stop.stop(Ending::Stop, 0);
    for thread in threads {
        let _ = thread.join();
    }
}

/// SO_REUSEPORT would let us share a port another process (of the same user) already listens
/// on, silently splitting its connections with it (or, worse, with the listener of a process
/// that just exited, whose queue nobody accepts from). A plain bind (SO_REUSEADDR, so sockets
/// in TIME_WAIT do not count) first tells whether the port is free; a busy port is retried for
/// `PORT_WAIT_MS` so that a restart works at once.
fn refuse_port_in_use(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    use socket2::{Domain, Socket, Type};
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PORT_WAIT_MS);
    loop {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        probe.set_reuse_address(true)?;
        match probe.bind(&addr.into()) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(PORT_RETRY_MS));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ))
            }
        }
    }
}

fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

type ShardRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

fn build_runtime(driver: IoDriver, entries: u32) -> io::Result<ShardRuntime> {
    match driver {
        IoDriver::Auto => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build(),
        IoDriver::Uring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .map(Into::into),
        IoDriver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(Into::into),
    }
}

/// Runs shard `id` until the server is stopped. `started` is told the runtime's driver, or why
/// the shard cannot run.
fn run_shard(
    id: u16,
    shared: Arc<Shared>,
    (listener, tls_listener): (std::net::TcpListener, Option<std::net::TcpListener>),
    end: MeshEnd,
    stop: &Stop,
    started: std::sync::mpsc::Sender<io::Result<&'static str>>,
    clock: Clock,
) {
    let (_, settings) = shared.settings.get();
    let runtime = build_runtime(settings.config.io_driver, settings.config.uring_entries);
    drop(settings);
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let e = io::Error::new(e.kind(), format!("cannot build shard {id}'s runtime: {e}"));
            let _ = started.send(Err(e));
            return;
        }
    };
    let driver = match &runtime {
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "epoll",
    };
    let _ = started.send(Ok(driver));
    runtime.block_on(async move {
        let MeshEnd {
            outgoing,
            incoming,
            wakers,
        } = end;
        let shard = Shard::with_clock(id, shared, outgoing, wakers, clock);
        monoio::spawn(mesh_task(shard.clone(), incoming));
        monoio::spawn(timer_task(shard.clone()));
        monoio::spawn(settings_task(shard.clone()));
        if shard.auth().tokens_required() {
            monoio::spawn(users_task(shard.clone()));
        }
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot register the listener");
                return;
            }
        };
        let tls_listener = match tls_listener.map(TcpListener::from_std).transpose() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot register the TLS listener");
                return;
            }
        };
        let tls_accept = async {
            match tls_listener {
                Some(listener) => tls::accept_loop(shard.clone(), listener).await,
                None => std::future::pending().await,
            }
        };
        monoio::select! {
            () = accept_loop(shard.clone(), listener) => {},
            () = tls_accept => {},
            () = stop.stopped(usize::from(id)) => {},
        }
        // The listener is closed (the accept loop is dropped): end the connections.
        shard.begin_stop(stop.ending());
        // Real time, on a manual clock too: connections end on their peers' schedule.
        let deadline = monoio::time::Instant::now() + Duration::from_millis(stop.wait_ms());
        let open = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) > 0;
        while (open(&shard.metrics.connections_open) || open(&shard.metrics.tls_connections_open))
            && monoio::time::Instant::now() < deadline
        {
            monoio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
        }
        // The tasks hold the shard and the shard holds their wakers: drop the tunnels (and
        // their wakers) before the runtime goes.
        shard.clear();
        shard.shared.settings.forget(usize::from(id));
    });
}

/// True, and counted, when the shard already holds `connections_per_shard_max` connections: an
/// accepted one is then closed at once (read per accept, so that a reload changes it).
fn refused_over_limit(shard: &Shard) -> bool {
    let open = shard.metrics.connections_open.load(Ordering::Relaxed);
    let full = open >= shard.config().connections_per_shard_max as u64;
    if full {
        Metrics::add(&shard.metrics.connections_refused, 1);
    }
    full
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if refused_over_limit(&shard) {
                    drop(stream);
                    continue;
                }
                Metrics::add(&shard.metrics.connections_accepted, 1);
                let _ = stream.set_nodelay(true);
                monoio::spawn(conn::serve(
                    shard.clone(),
                    stream,
                    mesh::Peer::of(peer),
                    None,
                    BytesMut::new(),
                ));
            }
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// Drains the rings from other shards; sleeps on the shard's mesh waker when they are empty.
async fn mesh_task(shard: Rc<Shard>, mut incoming: Vec<rtrb::Consumer<ShardMsg>>) {
    loop {
        let mut taken = 0;
        for ring in incoming.iter_mut() {
            while taken < MESH_BATCH_MAX {
                let Ok(msg) = ring.pop() else { break };
                taken += 1;
                handle_msg(&shard, msg);
            }
        }
        if taken >= MESH_BATCH_MAX {
            yield_now().await;
            continue;
        }
        poll_fn(|cx| {
            shard.register_mesh_waker(cx.waker());
            if incoming.iter().any(|r| !r.is_empty()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

fn handle_msg(shard: &Rc<Shard>, msg: ShardMsg) {
    match msg {
        ShardMsg::Publish(datagram) => shard.deliver(&datagram.copied()),
        ShardMsg::Private {
            tunnel,
            datagram,
            delivered,
        } => {
            // The publisher may have gone; the delivery stands either way.
            let _ = delivered.send(shard.deliver_private(&tunnel, datagram));
        }
        ShardMsg::UserReserve { sub, max, reply } => {
            let counted = shard.user_reserve_here(&sub, max);
            // An asker that went away before the answer cannot open its tunnel: undo.
            if reply.send(counted).is_err() && counted {
                shard.user_release_here(&sub);
            }
        }
        ShardMsg::UserRelease(sub) => shard.user_release_here(&sub),
        ShardMsg::Handoff(h) => match monoio::net::TcpStream::from_std(h.stream) {
            Ok(stream) => {
                Metrics::add(&shard.metrics.connections_accepted, 1);
                monoio::spawn(conn::serve(
                    shard.clone(),
                    stream,
                    h.peer,
                    Some(h.request),
                    BytesMut::from(&h.rest[..]),
                ));
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "cannot adopt handed-off connection")
            }
        },
    }
}

/// With tokens: tells the connections whose token expired (the grant's `exp`, on the wall
/// clock tokens are written in) and retries the user releases a full ring held back.
async fn users_task(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(Duration::from_millis(USERS_PERIOD_MS)).await;
        shard.flush_user_releases();
        shard.expire_grants(crate::auth::unix_now_s());
    }
}

/// Fires attachment deadlines (keepalives, long-poll ttls) and culls abandoned tunnels for the
/// whole shard. On the monotonic clock it sleeps until the earliest deadline, at most a second;
/// on a manual clock it waits for the clock to move instead, so that a test's `advance` fires
/// at once what came due, however far ahead. Either way an earlier deadline pokes it awake.
async fn timer_task(shard: Rc<Shard>) {
    loop {
        let (fired_ms, next_ms) = shard.run_timers();
        let target_ms = next_ms.min(fired_ms + TIMER_SLEEP_MS_MAX);
        let clock = async {
            if shard.clock().is_manual() {
                poll_fn(|cx| shard.clock().poll_moved(fired_ms, cx.waker())).await;
            } else {
                let wait_ms = target_ms.saturating_sub(shard.now_ms());
                monoio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
        };
        monoio::select! {
            _ = clock => {},
            _ = poll_fn(|cx| {
                if shard.poll_timer_poke(target_ms, cx.waker()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }) => {},
        }
    }
}

/// Swaps in the settings of each reload (docs/operations.md, "Reload") and says so.
async fn settings_task(shard: Rc<Shard>) {
    let id = usize::from(shard.id);
    let mut seen = 0;
    loop {
        let (generation, settings) = shard.shared.settings.newer(id, seen).await;
        shard.apply_settings(&settings);
        seen = generation;
        shard.shared.settings.applied(id, generation);
    }
}

/// Lets other tasks run once.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
