//! `loadgen`: an open-loop load generator for the router and its peers (tunnels, publishes,
//! latency, loss, memory), spread over worker processes.
//!
//! # Layout
//! - `args`: the command line and where each tunnel goes (process, target, source, transport).
//! - `coordinator`: the parent process: workers, memory samples, publisher, progress, results.
//! - `worker`: a worker process: its tunnels, its reports to the coordinator.
//! - `client`: one tunnel over WebSocket, SSE, NUL, NDJSON or long-poll (monoio).
//! - `publisher`: open-loop publishes over pipelined keep-alive connections.
//! - `response`: HTTP response heads, for the tunnels and the publisher.
//! - `peer`: each target's URLs and message shapes (router, Nchan, Pushpin, baseline).
//! - `pacing`: the open-loop schedule (intended send times).
//! - `tracker`: per-receiver sequence tracking (gaps, duplicates, out of order).
//! - `stats`: latency histograms, percentiles, the interval log.
//! - `memory`: Pss of the processes under test.
//! - `net`: connecting from a source address; the shared monotonic clock.
//! - `plot`: the SVG percentile plot (`loadgen plot`).
//! - `baseline`: the raw baseline server (`loadgen baseline`).
//! - `grip`: a GRIP origin for Pushpin (`loadgen grip-origin`).

mod args;
mod baseline;
mod client;
mod coordinator;
mod grip;
mod memory;
mod net;
mod pacing;
mod peer;
mod plot;
mod publisher;
mod response;
mod stats;
mod tracker;
mod worker;

use args::Command;

fn main() {
    // Help and version exit 0 here; a refused command line prints why and exits 2.
    let command = args::parse(std::env::args_os()).unwrap_or_else(|err| err.exit());
    let (name, tool) = match command {
        Command::Plot(args) => ("plot", plot::run(&args)),
        Command::Baseline(args) => ("baseline", baseline::run(&args)),
        Command::GripOrigin(args) => ("grip-origin", grip::run(&args)),
        Command::Worker {
            index,
            processes,
            args,
        } => {
            worker::run(args, index, processes);
            return;
        }
        Command::Run(args) => {
            // The command line as given: recorded in the results and passed on to the workers.
            let argv: Result<Vec<String>, _> = std::env::args_os()
                .skip(1)
                .map(|a| a.into_string())
                .collect();
            let Ok(argv) = argv else {
                eprintln!("loadgen: the command line is not UTF-8");
                std::process::exit(2);
            };
            run(args, &argv);
            return;
        }
    };
    if let Err(message) = tool {
        eprintln!("loadgen {name}: {message}");
        std::process::exit(2);
    }
}

fn run(args: args::Args, argv: &[String]) {
    match coordinator::run(args, argv) {
        Ok(finished) => {
            println!("{}", finished.line);
            if let Some(losses) = finished.losses {
                eprintln!("loadgen: the run lost or refused something: {losses}");
                std::process::exit(3);
            }
        }
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(1);
        }
    }
}
