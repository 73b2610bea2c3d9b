//! Pins every rule of SPEC section 2 on a local node.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use futures::StreamExt;
use herald::{
    DropPolicy, Error, HeaderMap, Message, Node, RecvTimeoutError, Router, SubscribeOptions,
    Target, TryRecvError,
};

const WAIT: Duration = Duration::from_secs(10);

fn text(msg: &Message) -> String {
    msg.text().unwrap().to_owned()
}

fn drain(sub: &mut herald::Subscription) -> Vec<String> {
    std::iter::from_fn(|| sub.try_recv().ok())
        .map(|m| text(&m))
        .collect()
}

#[test]
fn scopes_are_isolated() {
    let node = Node::local();
    let a = node.router("app_a", 10);
    let b = node.router("app_b", 10);
    let a2 = node.router("app_a", 10);
    let mut sub_a = a.subscribe("events").unwrap();
    let mut sub_b = b.subscribe("events").unwrap();
    a2.publish("events", "for a").unwrap();
    b.publish("events", "for b").unwrap();
    assert_eq!(drain(&mut sub_a), ["for a"]);
    assert_eq!(drain(&mut sub_b), ["for b"]);

    // Two local nodes share nothing, even in the same scope.
    let other = Node::local().router("app_a", 10);
    other.publish("events", "elsewhere").unwrap();
    assert!(drain(&mut sub_a).is_empty());
}

#[test]
fn one_copy_per_subscription_with_overlapping_patterns() {
    let router = Router::new(10, "s");
    let mut subs: Vec<_> = ["a.b.c", "a.*.c", "a.>", ">", "*.b.*", "a.b.c"]
        .iter()
        .map(|p| router.subscribe(p).unwrap())
        .collect();
    let mut miss = router.subscribe("a.b").unwrap();
    router.publish("a.b.c", "x").unwrap();
    for sub in &mut subs {
        assert_eq!(drain(sub), ["x"], "{}", sub.pattern());
    }
    assert!(drain(&mut miss).is_empty());
}

#[test]
fn each_publisher_order_is_kept() {
    let router = Router::new(100_000, "s");
    let mut sub = router.subscribe("seq.*").unwrap();
    let publishers = 4;
    let per = 5_000;
    let start = Arc::new(Barrier::new(publishers));
    let handles: Vec<_> = (0..publishers)
        .map(|p| {
            let router = router.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                for i in 0..per {
                    router.publish(&format!("seq.{p}"), format!("{i}")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut count = 0;
    while let Ok(msg) = sub.try_recv() {
        let n: i64 = text(&msg).parse().unwrap();
        let prev = last.insert(msg.subject().to_owned(), n).unwrap_or(-1);
        assert_eq!(n, prev + 1, "out of order on {}", msg.subject());
        count += 1;
    }
    assert_eq!(count, publishers * per);
    assert_eq!(sub.dropped(), 0);
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts() {
    let router = Router::new(3, "s");
    let mut sub = router.subscribe("t").unwrap();
    for i in 0..10 {
        router.publish("t", format!("{i}")).unwrap();
    }
    assert_eq!(sub.dropped(), 7);
    assert_eq!(sub.len(), 3);
    assert_eq!(drain(&mut sub), ["7", "8", "9"]);
}

#[test]
fn drop_newest_keeps_the_oldest_and_counts() {
    let router = Router::new(100, "s");
    let opts = SubscribeOptions::new()
        .capacity(3)
        .drop_policy(DropPolicy::DropNewest);
    let mut sub = router.subscribe_with("t", opts).unwrap();
    assert_eq!(sub.capacity(), 3);
    for i in 0..10 {
        router.publish("t", format!("{i}")).unwrap();
    }
    assert_eq!(sub.dropped(), 7);
    assert_eq!(drain(&mut sub), ["0", "1", "2"]);
}

#[test]
fn a_slow_subscriber_does_not_hold_back_others() {
    let router = Router::new(2, "s");
    let slow = router.subscribe("t").unwrap(); // never read
    let mut fast = router
        .subscribe_with("t", SubscribeOptions::new().capacity(1000))
        .unwrap();
    for i in 0..500 {
        router.publish("t", format!("{i}")).unwrap();
    }
    assert_eq!(slow.dropped(), 498);
    assert_eq!(drain(&mut fast).len(), 500);
}

#[test]
fn a_panicking_callback_is_contained() {
    let router = Router::new(100, "s");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let panicky = router
        .on("jobs", move |msg| {
            if text(&msg) == "boom" {
                panic!("callback failed on purpose");
            }
            tx.send(format!("panicky:{}", text(&msg))).unwrap();
        })
        .unwrap();
    let _calm = router
        .on("jobs", move |msg| {
            tx2.send(format!("calm:{}", text(&msg))).unwrap()
        })
        .unwrap();
    for payload in ["one", "boom", "two"] {
        router.publish("jobs", payload).unwrap();
    }
    let mut got: Vec<String> = (0..5).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "calm:boom",
            "calm:one",
            "calm:two",
            "panicky:one",
            "panicky:two"
        ]
    );
    assert_eq!(panicky.panics(), 1);
    assert!(!panicky.is_cancelled());
}

#[tokio::test]
async fn callbacks_run_in_order_on_a_runtime_and_stop_when_cancelled() {
    let router = Router::new(1000, "s");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = router
        .on("n", move |msg| tx.send(text(&msg)).unwrap())
        .unwrap();
    for i in 0..100 {
        router.publish("n", format!("{i}")).unwrap();
    }
    for i in 0..100 {
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, i.to_string());
    }
    handle.cancel();
    assert!(handle.is_cancelled());
    assert_eq!(router.subscription_count(), 0);
    // The callback task ends: the channel's sender it owned is dropped.
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap(), None);
}

#[test]
fn queue_group_delivers_each_message_to_exactly_one_member() {
    let router = Router::new(10_000, "s");
    let mut members: Vec<_> = (0..4)
        .map(|_| router.subscribe_queue("jobs.*", "workers").unwrap())
        .collect();
    let mut other_group = router.subscribe_queue("jobs.>", "auditors").unwrap();
    let mut plain = router.subscribe("jobs.*").unwrap();
    let total = 4_000;
    for i in 0..total {
        router.publish("jobs.run", format!("{i}")).unwrap();
    }
    let mut seen = vec![0u32; total];
    let mut per_member = Vec::new();
    for m in &mut members {
        let got = drain(m);
        per_member.push(got.len());
        for n in got {
            seen[n.parse::<usize>().unwrap()] += 1;
        }
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "each message exactly once in the group"
    );
    for n in per_member {
        assert!(n > total / 8, "members share the load: {n} of {total}");
    }
    assert_eq!(drain(&mut other_group).len(), total);
    assert_eq!(drain(&mut plain).len(), total);
}

#[test]
fn a_cancelled_queue_member_gets_nothing_and_the_rest_get_all() {
    let router = Router::new(1000, "s");
    let a = router.subscribe_queue("q", "g").unwrap();
    let mut b = router.subscribe_queue("q", "g").unwrap();
    a.cancel();
    for _ in 0..100 {
        router.publish("q", "x").unwrap();
    }
    assert_eq!(drain(&mut b).len(), 100);
}

#[tokio::test]
async fn request_with_nobody_listening_fails_at_once() {
    let router = Router::new(10, "s");
    let err = router
        .request("svc.none", "x", Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoResponders(ref s) if s == "svc.none"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn request_with_a_slow_responder_times_out() {
    let router = Router::new(10, "s");
    let _silent = router.subscribe("svc.slow").unwrap(); // takes the request, never replies
    let err = router
        .request("svc.slow", "x", Duration::from_millis(250))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(250)),
        "{err}"
    );
}

#[tokio::test]
async fn request_reply_through_respond() {
    let node = Node::local();
    let server = node.router("s", 10);
    let client = node.router("s", 10);
    let mut requests = server.subscribe("svc.upper").unwrap();
    let responder = tokio::spawn(async move {
        for _ in 0..3 {
            let req = requests.recv().await.unwrap();
            assert!(req.reply().unwrap().starts_with("_INBOX."));
            req.respond(text(&req).to_uppercase()).unwrap();
        }
    });
    for word in ["a", "bc", "def"] {
        let reply = client.request("svc.upper", word, WAIT).await.unwrap();
        assert_eq!(text(&reply), word.to_uppercase());
    }
    responder.await.unwrap();
    // Requests share one inbox subscription: the index does not grow per request.
    assert_eq!(server.subscription_count(), 1 /* inbox */);
}

#[test]
fn groups_errors_and_broadcast() {
    let router = Router::new(10, "s");
    let groups = router.groups();
    assert!(matches!(groups.delete("g"), Err(Error::NotFound(_))));
    assert!(matches!(groups.add("g", "t"), Err(Error::NotFound(_))));
    assert!(matches!(groups.remove("g", "t"), Err(Error::NotFound(_))));
    assert!(matches!(groups.topics("g"), Err(Error::NotFound(_))));
    assert!(matches!(
        groups.broadcast("g", "x"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        groups.create(""),
        Err(Error::InvalidGroupName { .. })
    ));

    groups.create("g").unwrap();
    assert!(matches!(groups.create("g"), Err(Error::AlreadyExists(ref n)) if n == "g"));
    assert!(groups.add("g", "room.1").unwrap());
    assert!(!groups.add("g", "room.1").unwrap(), "add is idempotent");
    assert!(groups.add("g", "room.2").unwrap());
    assert!(matches!(
        groups.add("g", "room.*"),
        Err(Error::InvalidSubject { .. })
    ));
    assert_eq!(
        groups.topics("g").unwrap().into_iter().collect::<Vec<_>>(),
        ["room.1", "room.2"]
    );
    groups.create("h").unwrap();
    assert_eq!(groups.list(), ["g", "h"]);

    let mut r1 = router.subscribe("room.1").unwrap();
    let mut all = router.subscribe("room.*").unwrap();
    assert_eq!(groups.broadcast("g", "hello").unwrap(), 3);
    assert_eq!(drain(&mut r1), ["hello"]);
    assert_eq!(drain(&mut all), ["hello", "hello"]);

    assert!(groups.remove("g", "room.1").unwrap());
    assert!(!groups.remove("g", "room.1").unwrap());
    assert_eq!(groups.broadcast("g", "again").unwrap(), 1);
    assert!(drain(&mut r1).is_empty());
    groups.delete("g").unwrap();
    assert_eq!(groups.list(), ["h"]);

    // Groups are per scope.
    let other = router.node().router("other", 10);
    assert!(other.groups().list().is_empty());
}

#[test]
fn plain_subscriptions_of_a_pattern_share_a_ring_and_each_reads_at_its_own_pace() {
    let router = Router::new(4, "s");
    let other = router.node().router("s", 4);
    let mut a = router.subscribe("t.*").unwrap();
    router.publish("t.x", "0").unwrap();
    // b shares a's ring but starts after message 0; c (another router) and d (another
    // capacity) have rings of their own.
    let mut b = router.subscribe("t.*").unwrap();
    let mut c = other.subscribe("t.*").unwrap();
    let mut d = router
        .subscribe_with("t.*", SubscribeOptions::new().capacity(2))
        .unwrap();
    assert_eq!(router.subscription_count(), 4);
    assert_eq!(router.index().len(), 3, "a and b share one index entry");
    for i in 1..=5 {
        router.publish("t.x", format!("{i}")).unwrap();
    }
    assert_eq!(
        (a.len(), a.dropped(), b.dropped(), d.dropped()),
        (4, 2, 1, 3)
    );
    assert_eq!(drain(&mut a), ["2", "3", "4", "5"]);
    assert_eq!(drain(&mut b), ["2", "3", "4", "5"]);
    assert_eq!(drain(&mut c), ["2", "3", "4", "5"]);
    assert_eq!(drain(&mut d), ["4", "5"]);
    // publish_others skips every subscription of its router, shared ring or not.
    router.publish_others("t.x", "6").unwrap();
    assert_eq!(drain(&mut c), ["6"]);
    assert!(drain(&mut a).is_empty() && drain(&mut b).is_empty() && drain(&mut d).is_empty());
    // A reader leaving does not disturb the others of its ring.
    router.publish("t.x", "7").unwrap();
    drop(a);
    assert_eq!(router.subscription_count(), 3);
    assert_eq!(drain(&mut b), ["7"]);
    // The last reader out takes the ring out of the index; a new subscription makes a new one.
    b.cancel();
    assert_eq!(b.try_recv().unwrap_err(), TryRecvError::Closed);
    assert_eq!((router.subscription_count(), router.index().len()), (2, 2));
    let mut e = router.subscribe("t.*").unwrap();
    router.publish("t.x", "8").unwrap();
    assert_eq!(drain(&mut e), ["8"]);
    assert_eq!(drain(&mut d), ["7", "8"]);
}

#[test]
fn cancelled_and_dropped_subscriptions_leave_the_index() {
    let router = Router::new(10, "s");
    let baseline = router.index().node_count();
    for i in 0..1_000 {
        let sub = router.subscribe(&format!("churn.{i}.*.>")).unwrap();
        let q = router.subscribe_queue("churn.q", "g").unwrap();
        router.publish(&format!("churn.{i}.x.y"), "x").unwrap();
        if i % 2 == 0 {
            sub.cancel();
            sub.cancel(); // idempotent
        }
        drop(sub);
        drop(q);
    }
    assert_eq!(router.subscription_count(), 0);
    assert_eq!(router.index().node_count(), baseline);
}

#[tokio::test]
async fn a_cancelled_subscription_reports_closed() {
    let router = Router::new(10, "s");
    let mut sub = router.subscribe("t").unwrap();
    router.publish("t", "buffered").unwrap();
    sub.cancel();
    assert!(sub.is_cancelled());
    assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Closed);
    assert!(sub.recv().await.is_none());
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(1)).unwrap_err(),
        RecvTimeoutError::Closed
    );
    assert!(sub.recv_blocking().is_none());
    router.publish("t", "after").unwrap();
    assert!(sub.try_recv().is_err());
}

/// A task reading a subscription that is never empty still lets the other tasks of its thread
/// run: each message takes a unit of tokio's task budget, as tokio's channels do. Shared-ring
/// and own-mailbox subscriptions alike.
#[tokio::test]
async fn a_busy_reader_yields_to_other_tasks_of_its_thread() {
    let router = Router::new(10_000, "s");
    let subs = [
        router.subscribe("t").unwrap(),
        router
            .subscribe_with(
                "t",
                SubscribeOptions::new().drop_policy(DropPolicy::DropNewest),
            )
            .unwrap(),
    ];
    for n in 0..10_000 {
        router.publish("t", n.to_string()).unwrap();
    }
    for mut sub in subs {
        let other_ran = Arc::new(AtomicUsize::new(0));
        let other = tokio::spawn({
            let other_ran = other_ran.clone();
            async move { other_ran.store(1, Ordering::SeqCst) }
        });
        let mut read_before_it_ran = None;
        for n in 0..10_000 {
            sub.recv().await.unwrap();
            if read_before_it_ran.is_none() && other_ran.load(Ordering::SeqCst) == 1 {
                read_before_it_ran = Some(n);
            }
        }
        other.await.unwrap();
        // The current-thread runtime runs the other task only when the reader yields.
        assert!(
            matches!(read_before_it_ran, Some(n) if n <= 256),
            "{read_before_it_ran:?}"
        );
    }
}

#[tokio::test]
async fn dropping_the_node_ends_subscriptions() {
    let mut sub = {
        let router = Router::new(10, "s");
        router.subscribe("t").unwrap()
    };
    assert!(
        tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn blocking_receive_from_another_thread() {
    let router = Router::new(10, "s");
    let mut sub = router.subscribe("t").unwrap();
    assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(1)).unwrap_err(),
        RecvTimeoutError::Timeout
    );
    let publisher = {
        let router = router.clone();
        thread::spawn(move || router.publish("t", "from a thread").unwrap())
    };
    assert_eq!(text(&sub.recv_blocking().unwrap()), "from a thread");
    publisher.join().unwrap();
    router.publish("t", "second").unwrap();
    assert_eq!(text(&sub.recv_timeout(WAIT).unwrap()), "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_is_a_stream() {
    let router = Router::new(100, "s");
    let sub = router.subscribe("n.*").unwrap();
    let publisher = router.clone();
    tokio::spawn(async move {
        for i in 0..10 {
            publisher
                .publish(&format!("n.{i}"), format!("{i}"))
                .unwrap();
            tokio::task::yield_now().await;
        }
    });
    let got: Vec<String> = tokio::time::timeout(WAIT, sub.take(10).map(|m| text(&m)).collect())
        .await
        .unwrap();
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn headers_and_reply_subjects_travel_with_messages() {
    let router = Router::new(10, "s");
    let mut sub = router.subscribe("h").unwrap();
    let mut headers = HeaderMap::new();
    headers.append("Trace", "1").unwrap();
    headers.append("Trace", "2").unwrap();
    router
        .publish_with_headers("h", headers.clone(), "body")
        .unwrap();
    router.publish_with_reply("h", "answers.here", "q").unwrap();
    let first = sub.try_recv().unwrap();
    assert_eq!(first.headers(), Some(&headers));
    assert_eq!(
        first
            .headers()
            .unwrap()
            .get_all("Trace")
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(first.reply(), None);
    let second = sub.try_recv().unwrap();
    assert_eq!(second.reply(), Some("answers.here"));
    assert!(second.headers().is_none());

    let mut answers = router.subscribe("answers.here").unwrap();
    second.respond("a").unwrap();
    assert_eq!(drain(&mut answers), ["a"]);
    assert!(matches!(first.respond("a"), Err(Error::NoReplySubject(_))));
}

#[test]
fn json_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Order {
        id: u32,
        item: String,
    }
    let router = Router::new(10, "s");
    let mut sub = router.subscribe("orders").unwrap();
    let order = Order {
        id: 7,
        item: "tea".into(),
    };
    router.publish_json("orders", &order).unwrap();
    let msg = sub.try_recv().unwrap();
    assert_eq!(msg.json::<Order>().unwrap(), order);
    router.publish("orders", "not json").unwrap();
    assert!(matches!(
        sub.try_recv().unwrap().json::<Order>(),
        Err(Error::Json(_))
    ));
    router.publish("orders", vec![0xff, 0xfe]).unwrap();
    assert!(matches!(
        sub.try_recv().unwrap().text(),
        Err(Error::Utf8(_))
    ));
}

/// A target standing in for a remote cluster route.
struct Remote(AtomicUsize);
impl Target for Remote {
    fn deliver(&self, _: u64, _: &herald::Delivery<'_>) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed);
        true
    }
    fn is_local(&self) -> bool {
        false
    }
}

#[test]
fn publish_local_skips_remote_targets_and_publish_others_skips_the_sender() {
    let node = Node::local();
    let me = node.router("s", 10);
    let you = node.router("s", 10);
    let remote = Arc::new(Remote(AtomicUsize::new(0)));
    let route = you.subscribe_target("t", None, 42, remote.clone()).unwrap();
    let mut mine = me.subscribe("t").unwrap();
    let mut yours = you.subscribe("t").unwrap();

    me.publish_local("t", "local").unwrap();
    assert_eq!(remote.0.load(Ordering::Relaxed), 0);
    assert_eq!(drain(&mut mine), ["local"]);
    assert_eq!(drain(&mut yours), ["local"]);

    me.publish_others("t", "others").unwrap();
    assert!(drain(&mut mine).is_empty());
    assert_eq!(drain(&mut yours), ["others"]);
    assert_eq!(remote.0.load(Ordering::Relaxed), 1);

    me.clone().publish_others("t", "clone").unwrap();
    assert!(
        drain(&mut mine).is_empty(),
        "clones share the sender identity"
    );

    assert!(you.unsubscribe_target(&route));
    assert!(!you.unsubscribe_target(&route));
    me.publish("t", "all").unwrap();
    assert_eq!(remote.0.load(Ordering::Relaxed), 2 - 1 + 1);
}

#[test]
fn queue_groups_prefer_local_members() {
    let router = Router::new(1000, "s");
    let remote = Arc::new(Remote(AtomicUsize::new(0)));
    router
        .subscribe_target("q", Some("g"), 1, remote.clone())
        .unwrap();
    let mut local = router.subscribe_queue("q", "g").unwrap();
    for _ in 0..100 {
        router.publish("q", "x").unwrap();
    }
    assert_eq!(drain(&mut local).len(), 100);
    assert_eq!(remote.0.load(Ordering::Relaxed), 0);
    drop(local);
    router.publish("q", "x").unwrap();
    assert_eq!(
        remote.0.load(Ordering::Relaxed),
        1,
        "remote member used when no local one is left"
    );
}

#[test]
fn bad_input_gets_errors_not_panics() {
    let router = Router::new(10, "s");
    for bad in ["", "a..b", ".a", "a.", "a.>.b", "a b", "x\0y"] {
        assert!(
            matches!(router.subscribe(bad), Err(Error::InvalidSubject { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(router.publish(bad, "x"), Err(Error::InvalidSubject { .. })),
            "{bad:?}"
        );
    }
    let err = router.publish("a.*", "x").unwrap_err().to_string();
    assert!(err.contains("a.*") && err.contains("wildcard"), "{err}");
    assert!(router.publish("a.>", "x").is_err());
    assert!(router.publish_with_reply("a", "r.*", "x").is_err());
    assert!(router.subscribe_queue("a", "bad queue").is_err());
    assert!(matches!(
        Router::new(0, "s").subscribe("a"),
        Err(Error::InvalidCapacity)
    ));
    assert!(matches!(
        router.subscribe_with("a", SubscribeOptions::new().capacity(0)),
        Err(Error::InvalidCapacity)
    ));
    assert_eq!(router.subscription_count(), 0, "nothing half-applied");
}

#[test]
fn publishing_while_subscribers_are_dropped_concurrently() {
    let router = Router::new(4, "s");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|t| {
            let router = router.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sub = router
                        .subscribe(if t == 0 { "c.>" } else { "c.x" })
                        .unwrap();
                    let q = router.subscribe_queue("c.*", "g").unwrap();
                    n += 1;
                    drop((sub, q));
                }
                n
            })
        })
        .collect();
    for i in 0..50_000 {
        router.publish("c.x", format!("{i}")).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        assert!(c.join().unwrap() > 0);
    }
    assert_eq!(router.subscription_count(), 0);
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Node>();
    send_sync::<Router>();
    send_sync::<Message>();
    send_sync::<herald::CallbackHandle>();
    send_sync::<Error>();
    send::<herald::Subscription>();
}

/// Many publishers, one reader that sleeps whenever the queue is empty: every message must
/// arrive or be counted as dropped, and the reader must not hang (no lost wake-up), for an async
/// reader and a blocking one, with and without drops.
#[test]
fn no_lost_wakeups_under_concurrent_publishers() {
    for (capacity, blocking) in [(200_000, false), (200_000, true), (8, false), (8, true)] {
        let case = format!("capacity {capacity}, blocking {blocking}");
        let router = Router::new(capacity, "s");
        let mut sub = router.subscribe("w.*").unwrap();
        let publishers = 4;
        let per = 20_000;
        let reader = {
            let case = case.clone();
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                let mut received = 0u64;
                // Publishers never pause for long: a receive this slow means a lost wake-up
                // (a blocking receive would otherwise recover at its deadline and hide it).
                let stall = Duration::from_secs(3);
                loop {
                    let started = std::time::Instant::now();
                    let msg = if blocking {
                        sub.recv_timeout(stall)
                            .unwrap_or_else(|e| panic!("{case}: {e} after {received}"))
                    } else {
                        rt.block_on(async { tokio::time::timeout(stall, sub.recv()).await })
                            .unwrap_or_else(|_| panic!("{case}: timed out after {received}"))
                            .unwrap()
                    };
                    assert!(
                        started.elapsed() < stall,
                        "{case}: lost wake-up after {received}"
                    );
                    received += 1;
                    // Published after every publisher finished: the newest, never evicted.
                    if msg.subject() == "w.end" {
                        return (received, sub.dropped());
                    }
                }
            })
        };
        let handles: Vec<_> = (0..publishers)
            .map(|p| {
                let router = router.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        router.publish(&format!("w.{p}"), format!("{i}")).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        router.publish("w.end", "").unwrap();
        let (received, dropped) = reader.join().unwrap();
        assert_eq!(received + dropped, (publishers * per + 1) as u64, "{case}");
        if capacity > publishers * per {
            assert_eq!(dropped, 0, "{case}");
        }
    }
}

/// A scope lives while a router, a subscription or a live group uses it, and is forgotten
/// after; a node that limits its scopes refuses new ones past the limit only while the old
/// ones are in use.
#[test]
fn scopes_nothing_uses_are_forgotten() {
    let node = Node::local();
    let baseline = node.scope_count();
    let scopes = |node: &Node| node.scopes().len() - baseline;

    // The last router of an idle scope takes it away.
    {
        let router = node.router("passing", 10);
        router.publish("a", "x").unwrap();
        assert_eq!(node.scopes(), vec!["passing".to_owned()]);
    }
    assert_eq!(scopes(&node), 0);

    // A subscription keeps its scope without a router, and takes it away when it goes
    // (plain subscriptions share a ring; queue subscriptions have their own mailbox).
    for queue in [None, Some("q")] {
        let router = node.router("held", 10);
        let mut sub = match queue {
            Some(q) => router.subscribe_queue("a", q).unwrap(),
            None => router.subscribe("a").unwrap(),
        };
        drop(router);
        assert_eq!(scopes(&node), 1);
        node.router("held", 10).publish("a", "kept").unwrap();
        assert_eq!(text(&sub.try_recv().unwrap()), "kept");
        drop(sub);
        assert_eq!(scopes(&node), 0, "{queue:?}");
    }
    assert_eq!(node.reclaim_scopes(), 0, "nothing was left for a sweep");

    // So does a live group; a deleted one does not.
    node.router("grouped", 10).groups().create("g").unwrap();
    assert_eq!(node.reclaim_scopes(), 0);
    assert_eq!(node.router("grouped", 10).groups().list(), vec!["g"]);
    node.router("grouped", 10).groups().delete("g").unwrap();
    assert_eq!(scopes(&node), 0);

    // A request's inbox alone does not keep a scope.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    {
        let router = node.router("asking", 10);
        let mut questions = router.subscribe("q").unwrap();
        // Asked and answered on one thread: a responder on another may still hold the scope
        // for a moment after its answer arrived (a sweep takes the scope then).
        let (reply, answered) = rt.block_on(async {
            tokio::join!(router.request("q", "?", Duration::from_secs(5)), async {
                questions.recv().await.unwrap().respond("a")
            })
        });
        answered.unwrap();
        assert_eq!(text(&reply.unwrap()), "a");
    }
    assert_eq!(scopes(&node), 0, "{:?}", node.scopes());

    // The limit counts scopes in use, and only new scopes are refused.
    let max = baseline + 2;
    let a = node.try_router("a", 10, max).unwrap();
    let b = node.try_router("b", 10, max).unwrap();
    assert!(matches!(
        node.try_router("c", 10, max),
        Err(Error::TooManyScopes { max: m }) if m == max
    ));
    assert_eq!(
        node.try_router("c", 10, max).unwrap_err().to_string(),
        format!("maximum scopes exceeded ({max})")
    );
    assert!(node.try_router("a", 10, max).is_ok());
    drop(a);
    let c = node.try_router("c", 10, max).unwrap();
    drop((b, c));
    assert_eq!(scopes(&node), 0);
    assert!(node.existing_router("a", 10).is_none());

    // Many scopes named once each leave nothing behind.
    for i in 0..10_000 {
        let router = node.router(&format!("tenant-{i}"), 10);
        let mut sub = router.subscribe("t").unwrap();
        router.publish("t", "x").unwrap();
        assert!(sub.try_recv().is_ok());
    }
    assert!(scopes(&node) <= 1, "{} scopes left", scopes(&node));
}
