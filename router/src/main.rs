//! The `router` binary: parses the configuration, raises the open-files limit, starts the shards,
//! then runs as a service (signals: drain, reload).

use mimalloc::MiMalloc;
use router::config::{Config, ConfigError};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc option numbers (`mi_option_e` in mimalloc.h; the same in v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes mimalloc for many small, long-lived connection states: commit arena memory on demand
/// and give freed pages back at once. Measured with `scripts/idle_memory.py` (10,000 idle SSE
/// tunnels): 4.3 KB of RSS per tunnel with the defaults, 2.5 KB with these options.
///
/// It must run before mimalloc reserves its first arena, which happens at the first allocation,
/// before `main`: so it runs as an early ELF constructor. Options set this way take precedence
/// over mimalloc's `MIMALLOC_*` environment variables.
extern "C" fn tune_allocator() {
    // SAFETY: plain setters of mimalloc's global option table; no other thread exists yet.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

#[used]
#[link_section = ".init_array.00100"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

fn main() {
    // Kept for SIGHUP, which reads the same file and applies the same flags again.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::from_args(args.iter().cloned()) {
        Ok(c) => c,
        Err(ConfigError::Help) => {
            println!("{}", Config::usage());
            return;
        }
        Err(e @ ConfigError::Version) => {
            println!("{e}");
            return;
        }
        Err(e) => {
            // Named as it was run (`target/release/router`, say), since it may not be on PATH.
            let program = std::env::args()
                .next()
                .unwrap_or_else(|| "router".to_owned());
            eprintln!("router: {e}");
            eprintln!("try `{program} --help`");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colours = router::os::log_colours(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR"),
    );
    let logging = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_filter_reloading();
    let log_filter = logging.reload_handle();
    logging.init();
    let reloading = router::server::service::Reloading {
        args,
        set_log: Box::new(move |directive| {
            let filter = tracing_subscriber::EnvFilter::try_new(directive)
                .map_err(|e| format!("{directive:?} is not a log filter: {e}"))?;
            log_filter.reload(filter).map_err(|e| e.to_string())
        }),
    };
    let files_max = router::os::raise_open_files_limit();
    tracing::info!(
        files_max,
        tunnels_max = files_max.saturating_sub(64),
        "open-files limit (each attached tunnel holds one socket)"
    );
    tracing::info!("configuration: {}", config.summary());
    for line in config.key_lines() {
        tracing::debug!("config: {line}");
    }
    match router::server::start(config) {
        Ok(server) => {
            tracing::info!(
                addr = %server.addr,
                shards = server.shared.metrics.len(),
                io_driver = %server.io_driver,
                "listening"
            );
            if let Some(tls_addr) = server.tls_addr {
                tracing::info!(tls_addr = %tls_addr, "listening for TLS (https, wss)");
            }
            // Until SIGTERM or SIGINT, then a drain; SIGHUP reloads (docs/operations.md).
            std::process::exit(router::server::service::run(server, &reloading));
        }
        Err(e) => {
            eprintln!("router: cannot start: {e}");
            std::process::exit(1);
        }
    }
}
