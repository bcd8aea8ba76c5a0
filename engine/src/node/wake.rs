//! How a runtime loop waits for its next input. The group loop
//! (`group/mod.rs`) and a gossip node's loop (`gossip_node/runtime.rs`)
//! each race the cancel-safe receives of their sources and take the first
//! input that comes, or wake with none (a deadline, a notification) to
//! step whatever is ready. What differs between them is only which
//! sources they have: each names its inputs in an enum of its own, `T`.

use std::future::Future;

use futures_lite::future;

/// What ended a wait.
pub(crate) enum Woken<T> {
    /// No input taken: a deadline passed, a notification came, or input
    /// was queued before the wait began (the turn drains it).
    Nothing,
    /// One input, taken from its source.
    Input(T),
}

/// A source's receive as a wake-up: its input, as `T` by `wrap`. A closed
/// source (`None`) never ends the wait; the loop learns of the close
/// another way (its shutdown, a failure).
pub(crate) async fn input<I, T>(
    receive: impl Future<Output = Option<I>>,
    wrap: impl FnOnce(I) -> T,
) -> Woken<T> {
    match receive.await {
        Some(input) => Woken::Input(wrap(input)),
        None => future::pending().await,
    }
}

/// A wake-up that brings no input (a timer, a notification).
pub(crate) async fn nothing<T>(wake: impl Future) -> Woken<T> {
    wake.await;
    Woken::Nothing
}

/// The first of four wake-ups; the others are dropped, which loses
/// nothing since every receive is cancel-safe.
pub(crate) async fn first<T>(
    a: impl Future<Output = Woken<T>>,
    b: impl Future<Output = Woken<T>>,
    c: impl Future<Output = Woken<T>>,
    d: impl Future<Output = Woken<T>>,
) -> Woken<T> {
    future::or(future::or(a, b), future::or(c, d)).await
}
