//! The vendored glommio's patched sleep and wake paths under stress
//! (third_party/README.md): executors go to sleep behind a `SeqCst` fence
//! instead of a membarrier IPI, and keep their timers armed across turns.
//! A lost wake-up shows here as a round trip that never completes (each
//! waits at most [`STUCK`]), a timer that fires early or not at all.
//!
//! `ORDO_WAKEUP_ROUNDS` sets the round trips per test (default 20,000).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use ordo_tests::env_u64;

/// Longer than any scheduling hiccup on a loaded 2-core machine; a lost
/// wake-up waits forever.
const STUCK: Duration = Duration::from_secs(5);

fn rounds() -> u64 {
    env_u64("ORDO_WAKEUP_ROUNDS", 20_000)
}

fn executor<T: Send + 'static, F, Fut>(name: &str, f: F) -> glommio::ExecutorJoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(name)
        .io_memory(256 << 10)
        .spawn(f)
        .expect("executor starts")
}

/// A pause that varies with `i`: none (the executor is still awake or
/// about to sleep: the race the fence closes), a spin, or a sleep long
/// enough that the executor parks first.
fn pause(i: u64) {
    match i % 7 {
        0..=2 => {}
        3..=4 => {
            let until = Instant::now() + Duration::from_micros(i % 40);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        _ => std::thread::sleep(Duration::from_micros(20 + i % 180)),
    }
}

#[test]
fn a_foreign_thread_always_wakes_a_sleeping_executor() {
    let rounds = rounds();
    let (to_executor, inbox) = async_channel::bounded::<u64>(1);
    let (reply, replies) = mpsc::channel::<u64>();
    let executor = executor("wake-foreign", move || async move {
        while let Ok(i) = inbox.recv().await {
            reply.send(i).expect("the test thread waits");
        }
    });
    for i in 0..rounds {
        pause(i);
        to_executor.send_blocking(i).expect("the executor runs");
        let answer = replies
            .recv_timeout(STUCK)
            .unwrap_or_else(|_| panic!("round {i}: the executor was not woken within {STUCK:?}"));
        assert_eq!(answer, i);
    }
    drop(to_executor);
    executor.join().expect("the executor ends");
}

#[test]
fn executors_wake_each_other_through_shared_channels() {
    let rounds = rounds();
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u64>(1);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u64>(1);
    let (done_tx, done) = mpsc::channel::<u64>();
    let echo = executor("wake-echo", move || async move {
        let ping = ping_rx.connect().await;
        let pong = pong_tx.connect().await;
        while let Some(i) = ping.recv().await {
            if pong.send(i).await.is_err() {
                break;
            }
        }
    });
    let driver = executor("wake-driver", move || async move {
        let ping = ping_tx.connect().await;
        let pong = pong_rx.connect().await;
        for i in 0..rounds {
            if i % 5 == 4 {
                // Let the echo executor go to sleep before the next ping.
                glommio::timer::sleep(Duration::from_micros(50 + i % 100)).await;
            }
            ping.send(i).await.expect("the echo executor runs");
            assert_eq!(pong.recv().await, Some(i));
            let _ = done_tx.send(i);
        }
    });
    let mut last = None;
    while last != Some(rounds - 1) {
        match done.recv_timeout(STUCK) {
            Ok(i) => last = Some(i),
            Err(_) => panic!("after round {last:?}: no round trip within {STUCK:?}"),
        }
    }
    driver.join().expect("the driver ends");
    echo.join().expect("the echo executor ends");
}

#[test]
fn timers_fire_on_time_while_foreign_wakes_come_and_go() {
    let sleeps = rounds() / 20;
    let (to_executor, inbox) = async_channel::unbounded::<u64>();
    let (report, reports) = mpsc::channel::<Result<u64, String>>();
    let executor = executor("wake-timers", move || async move {
        // Foreign wake-ups arrive on a second task while the first sleeps.
        let woken = glommio::spawn_local(async move {
            let mut count = 0u64;
            while inbox.recv().await.is_ok() {
                count += 1;
            }
            count
        });
        for i in 0..sleeps {
            let wanted = Duration::from_micros(i * 37 % 2_000);
            let start = Instant::now();
            glommio::timer::sleep(wanted).await;
            let took = start.elapsed();
            let result = if took < wanted {
                Err(format!("sleep {i}: {wanted:?} returned after {took:?}"))
            } else if took > wanted + STUCK {
                Err(format!("sleep {i}: {wanted:?} took {took:?}"))
            } else {
                Ok(i)
            };
            let failed = result.is_err();
            let _ = report.send(result);
            if failed {
                return;
            }
        }
        let _ = report.send(Ok(u64::MAX - woken.await));
    });
    let noise = std::thread::spawn(move || {
        for i in 0.. {
            pause(i);
            if to_executor.send_blocking(i).is_err() {
                break;
            }
            if i >= sleeps * 4 {
                break;
            }
        }
    });
    for _ in 0..sleeps {
        match reports.recv_timeout(STUCK * 2) {
            Ok(Ok(_)) => {}
            Ok(Err(failure)) => panic!("{failure}"),
            Err(_) => panic!("a timer did not fire within {:?}", STUCK * 2),
        }
    }
    noise.join().expect("the noise thread ends");
    let woken = u64::MAX
        - reports
            .recv_timeout(STUCK)
            .expect("a count")
            .expect("a count");
    assert!(woken > 0, "the foreign wake-ups reached the executor");
    executor.join().expect("the executor ends");
}

/// The kept preemption timer may fire after the executor took it as its
/// wake-up and before it sleeps: its completion is then consumed on the
/// way to sleep, and the executor must arm the user timer instead of
/// sleeping with none (`ordo-bench --rate` hung that way, about one run in
/// five). A 500 µs preemption period and loopback writes in flight make
/// the race frequent: without the fix this fails within ~50,000 sleeps.
#[test]
fn a_preemption_timer_that_fires_on_the_way_to_sleep_leaves_the_user_timer_armed() {
    let sleeps = rounds() * 5;
    let (report, reports) = mpsc::channel::<u64>();
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("wake-preempt")
        .io_memory(256 << 10)
        .preempt_timer(Duration::from_micros(500))
        .spawn(move || async move {
            // Loopback traffic on a second task keeps submissions in
            // flight, which widens the window the timer must fire in.
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            let addr = listener.local_addr().expect("its address");
            let (client, server) = futures_lite::future::zip(
                glommio::net::TcpStream::connect(addr),
                listener.accept(),
            )
            .await;
            let (mut client, mut server) = (client.expect("connects"), server.expect("accepts"));
            let traffic = glommio::spawn_local(async move {
                use futures_lite::AsyncReadExt;
                let mut bytes = [0u8; 64];
                while matches!(server.read(&mut bytes).await, Ok(n) if n > 0) {}
            })
            .detach();
            for i in 0..sleeps {
                use futures_lite::AsyncWriteExt;
                client.write_all(&[1]).await.expect("loopback write");
                glommio::timer::sleep(Duration::from_micros(i * 13 % 60)).await;
                if i % 1_000 == 0 {
                    let _ = report.send(i);
                }
            }
            traffic.cancel();
            let _ = report.send(u64::MAX);
        })
        .expect("executor starts");
    let mut last = None;
    loop {
        match reports.recv_timeout(STUCK) {
            Ok(u64::MAX) => break,
            Ok(i) => last = Some(i),
            Err(_) => panic!("after sleep {last:?}: the executor slept through its timer"),
        }
    }
    executor.join().expect("the executor ends");
}
