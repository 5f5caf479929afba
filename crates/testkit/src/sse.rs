//! A Server-Sent Events reader for the live stock feed: events (`id`, `data` as JSON) and `:` comments, read
//! from a streaming reqwest response chunk by chunk.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    Event {
        id: Option<String>,
        data: Value,
    },
    /// A comment line without its `:` (the heartbeat is `" ping"`).
    Comment(String),
    /// `retry:` field.
    Retry(u64),
}

pub struct SseStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    res: reqwest::Response,
    buf: String,
    /// The first items arrive with the head; kept until read.
    queued: std::collections::VecDeque<SseItem>,
    pub ended: bool,
}

impl SseStream {
    /// `GET <url>` with `Accept: text/event-stream` and, if given, `Last-Event-ID`.
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let mut req = http.get(url).header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("opening the stream failed: {e}"));
        Self {
            status: res.status(),
            headers: res.headers().clone(),
            res,
            buf: String::new(),
            queued: Default::default(),
            ended: false,
        }
    }

    /// The rest of a refused stream's body (the JSON error).
    pub async fn error_body(self) -> Value {
        let bytes = self.res.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// The next item within `timeout`; `None` on timeout or when the stream ended (then `ended` is set).
    pub async fn next(&mut self, timeout: Duration) -> Option<SseItem> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = self.queued.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?;
            match chunk {
                Ok(Some(bytes)) => {
                    self.buf.push_str(&String::from_utf8_lossy(&bytes));
                    self.parse();
                }
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }

    /// The next event (skipping comments), within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                SseItem::Event { id, data } => return Some((id, data)),
                _ => continue,
            }
        }
    }

    /// Reads events until one satisfies `want`, within `timeout`; returns it.
    pub async fn until(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> Option<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (id, data) = self.next_event(left).await?;
            if want(&data) {
                return Some((id, data));
            }
        }
    }

    /// Moves every complete block (ended by a blank line) from the buffer to the queue.
    fn parse(&mut self) {
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, String::new());
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix(':') {
                    self.queued.push_back(SseItem::Comment(comment.to_owned()));
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                } else if let Some(v) = line.strip_prefix("retry: ") {
                    self.queued
                        .push_back(SseItem::Retry(v.parse().unwrap_or_default()));
                }
            }
            if !data.is_empty() {
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                self.queued.push_back(SseItem::Event { id, data });
            }
        }
    }
}
