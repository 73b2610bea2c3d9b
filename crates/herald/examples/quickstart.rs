//! The README's quick start as a program: `cargo run -p herald --example quickstart`.

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), herald::Error> {
    // A router on a private local node: scope "my_app", 100 buffered messages per subscription.
    let router = herald::Router::new(100, "my_app");

    // Subscribe, publish, receive, cancel.
    let mut sub = router.subscribe("events")?;
    router.publish("events", "Hello, cluster!")?;
    match sub.try_recv() {
        Ok(msg) => println!("events: {}", msg.text()?),
        Err(_) => println!("No messages"),
    }
    sub.cancel();

    // Callback subscriptions run off the publisher's stack and return a cancel handle.
    let cancel = router.on("notifications", |msg| {
        println!("notifications: {}", msg.text().unwrap_or("<binary>"));
    })?;
    router.publish("notifications", "you have mail")?;

    // Several topics at once with wildcards: `*` is one token, `>` the rest.
    let mut rooms = router.subscribe("room.*")?;
    let mut all_orders = router.subscribe("orders.>")?;
    router.publish("room.lobby", "hi lobby")?;
    router.publish("orders.eu.42", "tea")?;
    println!("room.*: {}", rooms.recv().await.expect("open").text()?);
    println!(
        "orders.>: {}",
        all_orders.recv().await.expect("open").subject()
    );

    // Scopes isolate: another scope on the same node sees nothing of "my_app".
    let node = router.node();
    let other = node.router("other_app", 100);
    let mut theirs = other.subscribe("events")?;
    router.publish("events", "only for my_app")?;
    println!("other_app got something: {}", theirs.try_recv().is_ok());

    // Request/reply.
    let _echo = router.on("svc.echo", |msg| {
        let _ = msg.respond(msg.payload().clone());
    })?;
    let reply = router
        .request("svc.echo", "ping", Duration::from_secs(1))
        .await?;
    println!("svc.echo replied: {}", reply.text()?);

    // Give the callback task a moment to print, then stop it.
    tokio::task::yield_now().await;
    cancel.cancel();
    Ok(())
}
