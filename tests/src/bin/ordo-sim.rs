//! Replays simulator seeds: `ordo-sim SEED [SEED...]` or `ordo-sim --from A --count N`.
//! With `RUST_LOG` set (e.g. `RUST_LOG=ordo_engine=debug`), the cores'
//! tracing events of the replay go to stderr.

use ordo_tests::sim;

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: Vec<u64> = match args.as_slice() {
        [flag, from, flag2, count] if flag == "--from" && flag2 == "--count" => {
            let from: u64 = from.parse().expect("--from takes a number");
            let count: u64 = count.parse().expect("--count takes a number");
            (from..from + count).collect()
        }
        [] => {
            eprintln!("usage: ordo-sim SEED [SEED...] | ordo-sim --from A --count N");
            std::process::exit(2);
        }
        seeds => seeds
            .iter()
            .map(|s| s.parse().expect("a seed is a number"))
            .collect(),
    };
    let mut failed = 0;
    for seed in seeds {
        let plan = sim::Plan::from_seed(seed);
        match sim::run(seed) {
            Ok(summary) => println!("seed {seed} ok ({} nodes): {summary:?}", plan.nodes),
            Err(failure) => {
                failed += 1;
                println!("{failure}\nplan: {plan:#?}");
            }
        }
    }
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
