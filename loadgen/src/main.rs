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

use args::{parse_args, ArgsError, USAGE};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let tool = match argv.first().map(String::as_str) {
        Some("plot") => Some((
            "plot",
            plot::run_command as fn(&[String]) -> Result<(), String>,
        )),
        Some("baseline") => Some(("baseline", baseline::run_command as _)),
        Some("grip-origin") => Some(("grip-origin", grip::run_command as _)),
        _ => None,
    };
    if let Some((name, run)) = tool {
        if let Err(message) = run(&argv[1..]) {
            eprintln!("loadgen {name}: {message}");
            std::process::exit(2);
        }
        return;
    }
    // `loadgen worker INDEX PROCESSES ARGS...`: started by the coordinator only.
    if argv.first().map(String::as_str) == Some("worker") {
        let (Some(index), Some(processes)) = (
            argv.get(1).and_then(|s| s.parse().ok()),
            argv.get(2).and_then(|s| s.parse().ok()),
        ) else {
            eprintln!("loadgen worker: expected INDEX PROCESSES ARGS...");
            std::process::exit(2);
        };
        match parse_args(&argv[3..]) {
            Ok(args) => worker::run(args, index, processes),
            Err(_) => {
                eprintln!("loadgen worker: bad arguments");
                std::process::exit(2);
            }
        }
        return;
    }
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return;
        }
        Err(ArgsError::Bad(message)) => {
            eprintln!("loadgen: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    match coordinator::run(args, &argv) {
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
