//! The state stream: the router's journal and its snapshots on JetStream.
//!
//! `<PREFIX>_STATE` holds two subjects: `<prefix>.state.journal`, one entry
//! per commit (or per part of a large one), and `<prefix>.state.snapshot`,
//! the chunks of snapshots. Every journal append carries
//! `Nats-Expected-Last-Subject-Sequence` = the last journal sequence this
//! writer knows: the server stores it only if nobody else appended since,
//! so a router that lost its place (a paused former leader, a second
//! instance) is refused and steps down instead of writing. Each append also
//! carries a `Nats-Msg-Id` unique to the writer and entry: when a retry
//! (after a lost acknowledgement) is refused because the tip moved, the
//! writer reads the tip and, if it is its own entry, takes it as written.
//! (JetStream checks the expected sequence before duplicate ids, so the
//! refusal alone cannot tell "someone else wrote" from "my first try
//! landed".)
//!
//! Snapshot chunks are written unfenced: a snapshot only becomes the one
//! start-up reads once its marker is appended to the journal, and that
//! append is fenced.

use super::{check_subjects, setup, stream_name, transient, BusError};
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// The state stream's subjects; cheap to clone, so a snapshot can be
/// written and old entries purged by a task while routing goes on.
#[derive(Clone)]
pub struct StateStream {
    js: jetstream::Context,
    stream: stream::Stream,
    journal_subject: String,
    snapshot_subject: String,
    /// See [`super::Bus::following`].
    connection: tokio::sync::watch::Receiver<bool>,
}

pub struct Journal {
    s: StateStream,
    /// Sequence of the last journal entry this writer knows of: the fence.
    last: u64,
    /// Prefix of this writer's message ids (unique per process start).
    writer: String,
    appended: u64,
}

/// Appends waiting for their acknowledgement at once while writing chunks.
const CHUNK_WINDOW: usize = 64;

pub async fn setup_stream(js: &jetstream::Context, prefix: &str, replicas: usize) -> Result<stream::Stream, BusError> {
    let name = stream_name(prefix, "STATE");
    let subjects = vec![format!("{prefix}.state.journal"), format!("{prefix}.state.snapshot")];
    match js.get_stream(&name).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(setup(format!("stream {name}")))?;
            check_subjects(&name, &info.config.subjects, &subjects)?;
            if info.config.max_age != Duration::ZERO
                || info.config.max_messages > 0
                || info.config.max_bytes > 0
                || info.config.max_messages_per_subject > 0
            {
                return Err(BusError::Permanent {
                    what: format!("stream {name}"),
                    message: "has limits (max age, messages or bytes) that would discard router state".into(),
                    fix: format!("remove the limits (nats stream edit {name}) or delete the stream"),
                });
            }
            Ok(s)
        }
        Err(_) => js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects,
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: replicas,
                // Duplicate ids only need to cover an append's retries.
                duplicate_window: Duration::from_secs(120),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(setup(format!("creating stream {name}"))),
    }
}

impl Journal {
    pub async fn open(
        js: jetstream::Context,
        stream: stream::Stream,
        prefix: &str,
        connection: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Journal, BusError> {
        let s = StateStream {
            js,
            stream,
            journal_subject: format!("{prefix}.state.journal"),
            snapshot_subject: format!("{prefix}.state.snapshot"),
            connection,
        };
        let last = s.last_seq(&s.journal_subject).await?;
        Ok(Journal {
            s,
            last,
            writer: ulid::Ulid::new().to_string(),
            appended: 0,
        })
    }

    pub fn stream(&self) -> &StateStream {
        &self.s
    }

    pub fn tip(&self) -> u64 {
        self.last
    }

    /// Takes `seq` as the fence: the journal's tip this writer has read to.
    pub fn set_tip(&mut self, seq: u64) {
        self.last = seq;
    }

    /// Appends entries in order, each fenced on the one before.
    pub async fn append(&mut self, entries: &[Vec<u8>]) -> Result<u64, BusError> {
        for e in entries {
            self.appended += 1;
            let id = format!("{}-{}", self.writer, self.appended);
            let publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::copy_from_slice(e))
                .message_id(&id)
                .expected_last_subject_sequence(self.last);
            let ack = async {
                self.s
                    .js
                    .send_publish(self.s.journal_subject.clone(), publish)
                    .await
                    .map_err(|e| classify(e.kind(), e.to_string()))?
                    .await
                    .map_err(|e| classify(e.kind(), e.to_string()))
            };
            let ack = super::on_this_connection(&self.s.connection, ack).await;
            let ack = match ack {
                Err(BusError::Fenced(why)) => match self.s.own_tip(&id).await? {
                    Some(seq) => Ok(seq),
                    None => Err(BusError::Fenced(why)),
                },
                Err(e) => Err(self.s.confirm(e).await),
                Ok(a) => Ok(a.sequence),
            };
            match ack {
                Ok(seq) => self.last = seq,
                Err(e) => {
                    // The retry re-sends the same entry under the same id.
                    self.appended -= 1;
                    return Err(e);
                }
            }
        }
        Ok(self.last)
    }
}

impl Journal {
    /// Test hook: forget that the last append was acknowledged, as when the
    /// acknowledgement is lost on the way back.
    #[doc(hidden)]
    pub fn forget_last_ack(&mut self, tip_before: u64) {
        self.last = tip_before;
        self.appended = self.appended.saturating_sub(1);
    }
}

impl StateStream {
    /// "No stream found" from a publish is also what a cluster answers
    /// while the stream's leader is being elected (a node lost): only a
    /// stream lookup that says the stream does not exist makes it
    /// permanent; anything else is transient.
    async fn confirm(&self, e: BusError) -> BusError {
        use async_nats::jetstream::context::GetStreamErrorKind as K;
        let BusError::Permanent { what, message, .. } = &e else {
            return e;
        };
        if what != "the state stream" {
            return e;
        }
        let name = self.stream.cached_info().config.name.clone();
        match self.js.get_stream(&name).await {
            Err(g) if matches!(g.kind(), K::JetStream(j) if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) => {
                e
            }
            _ => BusError::Transient {
                what: "journal append",
                message: format!("{message} (the stream exists: a leader election, probably)"),
            },
        }
    }

    /// The journal's tip, when it is the entry this writer sent as `id`.
    async fn own_tip(&self, id: &str) -> Result<Option<u64>, BusError> {
        super::on_this_connection(&self.connection, self.own_tip_now(id)).await
    }

    async fn own_tip_now(&self, id: &str) -> Result<Option<u64>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        match self.stream.get_last_raw_message_by_subject(&self.journal_subject).await {
            Ok(m) => {
                let mine = m
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .is_some_and(|v| v.as_str() == id);
                Ok(mine.then_some(m.sequence))
            }
            Err(e) if matches!(e.kind(), K::NoMessageFound) => Ok(None),
            Err(e) => Err(transient("reading the journal's tip")(e)),
        }
    }

    /// Sequence of the last message on `subject`, 0 when there is none.
    async fn last_seq(&self, subject: &str) -> Result<u64, BusError> {
        super::on_this_connection(&self.connection, self.last_seq_now(subject)).await
    }

    async fn last_seq_now(&self, subject: &str) -> Result<u64, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if matches!(e.kind(), K::NoMessageFound) => Ok(0),
            Err(e) => Err(transient("reading the journal's tip")(e)),
        }
    }

    /// Every journal entry with sequence `from` or later, up to the tip as
    /// it is now, as (sequence, bytes).
    pub async fn read_from(&self, from: u64) -> Result<Vec<(u64, Bytes)>, BusError> {
        let last = self.last_seq(&self.journal_subject).await?;
        self.read(
            &self.journal_subject,
            from.max(1),
            |seq, _| seq >= last,
            last == 0 || from > last,
        )
        .await
    }

    /// A snapshot's `chunks` chunks, from stream sequence `first`.
    pub async fn read_chunks(&self, first: u64, chunks: u32) -> Result<Vec<Bytes>, BusError> {
        let mut n = 0u32;
        let v = self
            .read(
                &self.snapshot_subject,
                first,
                |_, _| {
                    n += 1;
                    n >= chunks
                },
                chunks == 0,
            )
            .await?;
        Ok(v.into_iter().map(|(_, b)| b).collect())
    }

    /// Abandoned when the connection drops meanwhile (the ordered consumer
    /// it reads through is gone with a restarted server).
    async fn read(
        &self,
        subject: &str,
        from: u64,
        done: impl FnMut(u64, &Bytes) -> bool,
        empty: bool,
    ) -> Result<Vec<(u64, Bytes)>, BusError> {
        super::on_this_connection(&self.connection, self.read_now(subject, from, done, empty)).await
    }

    async fn read_now(
        &self,
        subject: &str,
        from: u64,
        mut done: impl FnMut(u64, &Bytes) -> bool,
        empty: bool,
    ) -> Result<Vec<(u64, Bytes)>, BusError> {
        let mut out = Vec::new();
        if empty {
            return Ok(out);
        }
        let c = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
                ..Default::default()
            })
            .await
            .map_err(transient("reading the state stream"))?;
        let mut msgs = c.messages().await.map_err(transient("reading the state stream"))?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), msgs.next())
                .await
                .map_err(|_| BusError::Transient {
                    what: "reading the state stream",
                    message: "no message for 30 s".into(),
                })?;
            let Some(m) = next else { break };
            let m = m.map_err(transient("reading the state stream"))?;
            let info = m.info().map_err(transient("reading the state stream"))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let stop = done(seq, &m.payload);
            out.push((seq, m.payload.clone()));
            if stop || pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Writes a snapshot's chunks; returns the sequence of the first.
    pub async fn write_chunks(&self, chunks: Vec<Vec<u8>>) -> Result<u64, BusError> {
        super::on_this_connection(&self.connection, self.write_chunks_now(chunks)).await
    }

    async fn write_chunks_now(&self, chunks: Vec<Vec<u8>>) -> Result<u64, BusError> {
        let mut first = None;
        let mut it = chunks.into_iter().peekable();
        while it.peek().is_some() {
            let mut acks = Vec::with_capacity(CHUNK_WINDOW);
            for c in it.by_ref().take(CHUNK_WINDOW) {
                let ack = self
                    .js
                    .publish(self.snapshot_subject.clone(), Bytes::from(c))
                    .await
                    .map_err(|e| classify(e.kind(), e.to_string()))?;
                acks.push(std::future::IntoFuture::into_future(ack));
            }
            for a in futures::future::join_all(acks).await {
                let a = match a {
                    Ok(a) => a,
                    Err(e) => return Err(self.confirm(classify(e.kind(), e.to_string())).await),
                };
                first.get_or_insert(a.sequence);
            }
        }
        Ok(first.unwrap_or(0))
    }

    /// Drops journal entries up to `covers` and snapshot chunks before
    /// `first_chunk`: both are superseded by the snapshot starting there.
    pub async fn purge(&self, covers: u64, first_chunk: u64) -> Result<(), BusError> {
        super::on_this_connection(&self.connection, self.purge_now(covers, first_chunk)).await
    }

    async fn purge_now(&self, covers: u64, first_chunk: u64) -> Result<(), BusError> {
        self.stream
            .purge()
            .filter(self.journal_subject.clone())
            .sequence(covers + 1)
            .await
            .map_err(transient("purging the journal"))?;
        self.stream
            .purge()
            .filter(self.snapshot_subject.clone())
            .sequence(first_chunk)
            .await
            .map_err(transient("purging old snapshots"))?;
        Ok(())
    }
}

/// Publish errors by what the daemon must do about them.
fn classify(kind: PublishErrorKind, message: String) -> BusError {
    match kind {
        PublishErrorKind::WrongLastSequence => BusError::Fenced(message),
        PublishErrorKind::StreamNotFound => BusError::Permanent {
            what: "the state stream".into(),
            message,
            fix: "it was deleted; restart the router to re-create it (state is lost) or restore it".into(),
        },
        PublishErrorKind::MaxPayloadExceeded => BusError::Permanent {
            what: "a journal entry".into(),
            message,
            fix: "raise the server's max_payload (1 MiB or more)".into(),
        },
        _ => BusError::Transient {
            what: "journal append",
            message,
        },
    }
}
