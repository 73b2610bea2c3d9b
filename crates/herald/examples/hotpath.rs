//! A fixed amount of publish work, for instruction counting without machine noise:
//!
//! ```sh
//! cargo build --release -p herald --example hotpath
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/hotpath 1 1000000
//! ```
//! Arguments: subscribers, messages. Prints what it did; divide callgrind's total instruction
//! count by the messages delivered.

use herald::{Bytes, Router};

fn main() -> Result<(), herald::Error> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(0));
    let subscribers = args.next().unwrap_or(1).max(1);
    let messages = args.next().unwrap_or(1_000_000);
    let batch = 1024;
    let router = Router::new(batch, "hotpath");
    let mut subs: Vec<_> = (0..subscribers)
        .map(|_| router.subscribe("hot.path"))
        .collect::<Result<_, _>>()?;
    let payload = Bytes::from(vec![7u8; 16]);
    let mut received = 0usize;
    for _ in 0..messages / batch {
        for _ in 0..batch {
            router.publish("hot.path", payload.clone())?;
        }
        for sub in &mut subs {
            while sub.try_recv().is_ok() {
                received += 1;
            }
        }
    }
    println!(
        "subscribers={subscribers} published={} delivered={received}",
        messages / batch * batch
    );
    Ok(())
}
