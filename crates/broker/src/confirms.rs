//! Giving every publish on a shared confirm-mode channel its own answer.
//!
//! lapin numbers a publish (its delivery tag) and queues its frames under two different locks, and it hands a
//! `basic.return` to whichever confirm completes next (for a `multiple` ack, in hash-map order). So on a channel
//! shared by many threads, a confirm or a returned message can reach the wrong caller. The ledger fixes both:
//!
//! - numbering and queueing happen together under the ledger's lock (the first poll of `basic_publish` does
//!   both, synchronously: checked in lapin 4.12, re-check on upgrade, and
//!   `broker::concurrent_publishes_each_get_their_own_confirm` catches a regression), so the order of the
//!   ledger is the order the broker numbers the messages in;
//! - a returned message is recorded by its `message_id`, whichever confirm carried it, and a publish is decided
//!   only once every earlier publish of the channel has its confirm. RabbitMQ sends a message's `basic.return`
//!   before its ack, in publish order, and every confirm takes the oldest waiting return; so once the confirms
//!   of all publishes up to this one have arrived, its return (if any) has been taken and recorded.
//!
//! The lock covers only that first poll (no I/O wait, never the confirm). The caller awaits its own confirm; one
//! that gives up (timeout, dropped request) hands it to a task, so the publishes behind it are still answered.

use crate::publisher::PublishError;
use lapin::Confirmation;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::oneshot;

/// Where a publish failed: before its frames were queued for the socket, or while waiting for its confirm.
pub(crate) enum Stage {
    Send(lapin::Error),
    Confirm(lapin::Error),
    /// No confirm within the bound: the channel is broken and its reconnect replaces the ledger.
    GaveUp(Duration),
}

/// `basic_publish` and its confirm, owning what they borrow so the confirm can be awaited by its own task.
pub(crate) type Publishing = Pin<Box<dyn Future<Output = Result<Confirmation, Stage>> + Send>>;

/// A publish whose frames are queued: its confirm, then its answer once every earlier publish has its own.
pub(crate) struct InFlight {
    ledger: Arc<Ledger>,
    tag: u64,
    /// Still waiting for the broker's confirm.
    publishing: Option<Publishing>,
    answer: oneshot::Receiver<Result<(), PublishError>>,
    give_up: Duration,
}

impl InFlight {
    /// The caller awaits its own confirm (no task per publish on the hot path); if it stops waiting (timeout,
    /// dropped request), `Drop` hands the confirm to a task so the publishes behind it are still answered.
    pub(crate) async fn answer(mut self) -> Result<(), PublishError> {
        if let Some(publishing) = self.publishing.as_mut() {
            let result = publishing.as_mut().await;
            self.publishing = None;
            self.ledger.settle(self.tag, result);
        }
        (&mut self.answer).await.unwrap_or_else(|_| {
            Err(PublishError::Unconfirmed(
                "the publisher channel was replaced".into(),
            ))
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(publishing) = self.publishing.take() else {
            return;
        };
        let (ledger, tag, give_up) = (Arc::clone(&self.ledger), self.tag, self.give_up);
        let finish = async move {
            let result = tokio::time::timeout(give_up, publishing)
                .await
                .unwrap_or(Err(Stage::GaveUp(give_up)));
            ledger.settle(tag, result);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(finish)),
            // No runtime (the process is ending): settle now so nothing waits behind it.
            Err(_) => self
                .ledger
                .settle(self.tag, Err(Stage::GaveUp(Duration::ZERO))),
        }
    }
}

#[derive(Default)]
pub(crate) struct Ledger {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Publishes in the order the broker numbers them, until they and every earlier one have their confirm.
    pending: BTreeMap<u64, Slot>,
    /// `message_id`s the broker returned as unroutable, not yet claimed by their publish.
    returned: HashMap<String, usize>,
}

struct Slot {
    message_id: String,
    settled: Option<Settled>,
    answer: oneshot::Sender<Result<(), PublishError>>,
}

enum Settled {
    Ack,
    Nack,
    Failed(PublishError),
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `publishing` for the socket in ledger order. `give_up` bounds the wait for a confirm that never
    /// comes (the channel is broken; its reconnect replaces the ledger).
    pub(crate) async fn submit(
        self: &Arc<Self>,
        message_id: &str,
        mut publishing: Publishing,
        give_up: Duration,
    ) -> InFlight {
        let (tx, answer) = oneshot::channel();
        let mut tx = Some(tx);
        let mut numbered = None;
        let first = std::future::poll_fn(|cx| {
            let mut state = self.lock();
            let polled = publishing.as_mut().poll(cx);
            // Refused before anything was queued (channel closed): not numbered, nothing to wait for.
            if !matches!(polled, Poll::Ready(Err(Stage::Send(_))))
                && let Some(answer) = tx.take()
            {
                numbered = Some(state.number(message_id, answer));
            }
            Poll::Ready(polled)
        })
        .await;
        let mut in_flight = InFlight {
            ledger: Arc::clone(self),
            tag: numbered.unwrap_or_default(),
            publishing: None,
            answer,
            give_up,
        };
        match (first, numbered) {
            (Poll::Ready(result), Some(tag)) => self.settle(tag, result),
            (Poll::Pending, Some(_)) => in_flight.publishing = Some(publishing),
            (Poll::Ready(Err(Stage::Send(e))), None) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Err(send_error(&e)));
                }
            }
            (_, None) => {}
        }
        in_flight
    }

    fn settle(&self, tag: u64, result: Result<Confirmation, Stage>) {
        let (settled, returned) = match result {
            Ok(Confirmation::Ack(returned)) => (Settled::Ack, returned),
            Ok(Confirmation::Nack(returned)) => (Settled::Nack, returned),
            Ok(Confirmation::NotRequested) => (
                Settled::Failed(PublishError::Unconfirmed(
                    "the channel is not in confirm mode".into(),
                )),
                None,
            ),
            Err(Stage::Send(e)) => (Settled::Failed(send_error(&e)), None),
            Err(Stage::Confirm(e)) => (
                Settled::Failed(PublishError::Unconfirmed(e.to_string())),
                None,
            ),
            Err(Stage::GaveUp(after)) => (
                Settled::Failed(PublishError::Unconfirmed(format!(
                    "no confirm within {} ms",
                    after.as_millis()
                ))),
                None,
            ),
        };
        let returned = returned.map(|message| {
            message
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default()
        });
        self.lock().settle(tag, settled, returned);
    }
}

impl State {
    /// Gives the next publish its place; the caller holds the lock while it queues the frames.
    fn number(
        &mut self,
        message_id: &str,
        answer: oneshot::Sender<Result<(), PublishError>>,
    ) -> u64 {
        let tag = self.next;
        self.next += 1;
        self.pending.insert(
            tag,
            Slot {
                message_id: message_id.to_owned(),
                settled: None,
                answer,
            },
        );
        tag
    }

    /// Records the confirm of `tag` and the returned message it carried (whoever published that one).
    fn settle(&mut self, tag: u64, settled: Settled, returned: Option<String>) {
        if let Some(id) = returned {
            *self.returned.entry(id).or_default() += 1;
        }
        if let Some(slot) = self.pending.get_mut(&tag) {
            slot.settled = Some(settled);
        }
        self.answer_in_order();
    }

    fn take_returned(&mut self, message_id: &str) -> bool {
        match self.returned.get_mut(message_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.returned.remove(message_id);
                true
            }
            None => false,
        }
    }

    /// Answers every publish whose confirm and all earlier ones' have arrived.
    fn answer_in_order(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().settled.is_none() {
                return;
            }
            let slot = entry.remove();
            let answer = match slot.settled {
                Some(Settled::Ack) if self.take_returned(&slot.message_id) => {
                    Err(PublishError::Unroutable)
                }
                Some(Settled::Ack) => Ok(()),
                Some(Settled::Nack) => {
                    self.take_returned(&slot.message_id);
                    Err(PublishError::Nacked)
                }
                Some(Settled::Failed(e)) => Err(e),
                None => return,
            };
            // The caller may have given up (timeout, dropped request); its answer is then unknown to it.
            let _ = slot.answer.send(answer);
        }
        // Every publish is answered: a return still here belongs to one answered without it (nacked or failed).
        self.returned.clear();
    }
}

/// A publish refused before its frames were queued was never sent; anything else may have reached the socket.
fn send_error(e: &lapin::Error) -> PublishError {
    match e.kind() {
        lapin::ErrorKind::InvalidChannelState(..)
        | lapin::ErrorKind::InvalidConnectionState(..)
        | lapin::ErrorKind::InvalidChannel(..) => PublishError::NotSent(e.to_string()),
        _ => PublishError::Unconfirmed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rx = oneshot::Receiver<Result<(), PublishError>>;

    fn publish(state: &mut State, id: &str) -> (u64, Rx) {
        let (tx, rx) = oneshot::channel();
        (state.number(id, tx), rx)
    }

    fn answer(rx: &mut Rx) -> Option<String> {
        rx.try_recv().ok().map(|r| match r {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.label().to_owned(),
        })
    }

    #[test]
    fn a_return_carried_by_another_confirm_reaches_its_own_publish() {
        let mut state = State::default();
        let (a, mut rx_a) = publish(&mut state, "a");
        let (b, mut rx_b) = publish(&mut state, "b");
        // A multiple ack completes b first and hands it a's return.
        state.settle(b, Settled::Ack, Some("a".into()));
        assert_eq!(answer(&mut rx_b), None, "b waits for the earlier publish a");
        state.settle(a, Settled::Ack, None);
        assert_eq!(answer(&mut rx_a).as_deref(), Some("unroutable"));
        assert_eq!(answer(&mut rx_b).as_deref(), Some("ok"));
        assert!(state.pending.is_empty() && state.returned.is_empty());
    }

    #[test]
    fn a_nack_is_answered_as_such_and_leaves_no_return_behind() {
        let mut state = State::default();
        let (a, mut rx_a) = publish(&mut state, "a");
        let (b, mut rx_b) = publish(&mut state, "b");
        state.settle(a, Settled::Nack, None);
        assert_eq!(answer(&mut rx_a).as_deref(), Some("nacked"));
        // A stray return of a publish already answered is dropped once every publish is answered.
        state.settle(b, Settled::Ack, Some("a".into()));
        assert_eq!(answer(&mut rx_b).as_deref(), Some("ok"));
        assert!(state.returned.is_empty());
    }

    #[test]
    fn the_same_message_id_returned_twice_answers_both() {
        let mut state = State::default();
        let (a, mut rx_a) = publish(&mut state, "same");
        let (b, mut rx_b) = publish(&mut state, "same");
        state.settle(a, Settled::Ack, Some("same".into()));
        state.settle(b, Settled::Ack, Some("same".into()));
        assert_eq!(answer(&mut rx_a).as_deref(), Some("unroutable"));
        assert_eq!(answer(&mut rx_b).as_deref(), Some("unroutable"));
    }

    #[test]
    fn a_failure_is_answered_and_does_not_block_later_publishes() {
        let mut state = State::default();
        let (a, mut rx_a) = publish(&mut state, "a");
        let (b, mut rx_b) = publish(&mut state, "b");
        state.settle(b, Settled::Ack, None);
        state.settle(
            a,
            Settled::Failed(PublishError::Unconfirmed("channel closed".into())),
            None,
        );
        assert_eq!(answer(&mut rx_a).as_deref(), Some("unconfirmed"));
        assert_eq!(answer(&mut rx_b).as_deref(), Some("ok"));
    }
}
