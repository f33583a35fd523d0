//! The native streaming pipeline: each stage of a streamed run on a thread of its own, with
//! every buffer set in flight, so that each stage waits only for the slowest.
//!
//! ```text
//!  producer thread        this thread              poller thread        consumer thread
//!  source(rows, X) ──▶ unmap X, encode copy  ──▶ wait for the       ──▶ sink(Q, K, V in the
//!  into the mapped      + fill + kernel +          submission: maps      mapped memory);
//!  staging buffer       copies back, submit;       done               unmap; set free
//!         ▲             map X (write), Q, K, V                                  │
//!         └──────────────────── (read) ◀───────────────────────────────────────┘
//! ```
//!
//! A buffer set goes round that circle, one chunk at a time, chunks in order at every stage.
//! The source writes X straight into the set's staging buffer, mapped for writing, in the
//! type and layout the kernel reads ([`Upload::Mapped`]; a kernel that reads another type
//! or a padded stride gets the source's rows converted there, [`Upload::MappedConverted`];
//! textures are written by the queue). The sink reads Q, K, V in place from the mapped
//! staging memory. This thread does the GPU work (so the error scopes that name a failure
//! are its own) and keeps the books: which set holds which chunk, the stages' busy times,
//! the first error.
//!
//! A failure anywhere (the source, the GPU, a map, the sink, a panic in a closure) stops new
//! chunks; the chunks already out are waited for, their buffers unmapped, and the first
//! error returned. The sets are left ready for the next run.
//!
//! This file is the calling thread's part: the threads started, the books kept, the events
//! answered. What each stage does with a buffer set is `stages.rs`.

mod stages;

use super::engine::{ChunkOutput, Engine};
use super::timing::RunTimings;
use crate::error::{Error, Result};
use crate::host::ElementsMut;
use stages::{poll, spawn, Event, Maps};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The channels the calling thread hands work down.
struct Lanes<'a> {
    produce: &'a mpsc::Sender<(usize, u32)>,
    consume: &'a mpsc::Sender<(usize, u32)>,
    poll: &'a mpsc::Sender<(wgpu::SubmissionIndex, String)>,
    events: &'a mpsc::Sender<Event>,
}

/// The calling thread's books of a run: what each set holds, how many sets are at each
/// stage, the stages' busy times, and the first error.
struct Books {
    chunks: u32,
    chunk_of: Vec<u32>,
    next: u32,
    producing: usize,
    on_gpu: usize,
    consuming: usize,
    maps: Vec<Option<Arc<Maps>>>,
    ready: BTreeMap<u32, usize>,
    next_consumed: u32,
    gpu_since: Option<Instant>,
    failed: Option<Error>,
    t: RunTimings,
}

impl Books {
    fn new(chunks: u32, sets: usize, t: RunTimings) -> Self {
        Self {
            chunks,
            chunk_of: vec![0; sets],
            next: 0,
            producing: 0,
            on_gpu: 0,
            consuming: 0,
            maps: (0..sets).map(|_| None).collect(),
            ready: BTreeMap::new(),
            next_consumed: 0,
            gpu_since: None,
            failed: None,
            t,
        }
    }

    /// The run's times, or its first error.
    fn finish(self) -> Result<RunTimings> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.t),
        }
    }

    /// Sets out at some stage.
    fn out(&self) -> usize {
        self.producing + self.on_gpu + self.consuming
    }

    /// Keeps the first error.
    fn fail(&mut self, e: Error) {
        self.failed.get_or_insert(e);
    }

    /// Gives `set` the next chunk to produce.
    fn produce_next(&mut self, set: usize, lanes: &Lanes<'_>) {
        self.chunk_of[set] = self.next;
        lanes.produce.send((set, self.next)).ok();
        self.next += 1;
        self.producing += 1;
    }

    fn on_event(
        &mut self,
        engine: &Engine<'_>,
        event: Event,
        lanes: &Lanes<'_>,
        progress: &mut impl FnMut(u32),
    ) {
        match event {
            Event::Produced {
                set,
                index,
                busy,
                result,
            } => self.produced(engine, (set, index), busy, result, lanes),
            Event::Mapped { set, result } => self.mapped(engine, set, result, lanes),
            Event::Consumed {
                set,
                index,
                busy,
                kernel,
                result,
            } => {
                self.consuming -= 1;
                self.t.readback += busy;
                self.t.kernel += kernel.0 + kernel.1;
                self.t.epilogue += kernel.1;
                match result {
                    Ok(()) if self.failed.is_none() => progress(engine.plan.chunk(index).end),
                    Ok(()) => {}
                    Err(e) => self.fail(e),
                }
                if self.failed.is_none() && self.next < self.chunks {
                    self.produce_next(set, lanes);
                }
            }
            Event::PollFailed(e) => {
                self.fail(e);
                // Maps that will never complete are aborted (their callbacks then report
                // it), so that every chunk out comes home.
                for (set, m) in self.maps.iter().enumerate() {
                    if m.is_some() {
                        engine.abort_maps(set);
                    }
                }
            }
        }
    }

    /// X of chunk `index` is in `set`'s staging buffer: submit the chunk.
    fn produced(
        &mut self,
        engine: &Engine<'_>,
        (set, index): (usize, u32),
        busy: Duration,
        result: Result<()>,
        lanes: &Lanes<'_>,
    ) {
        self.producing -= 1;
        self.t.input += busy;
        if let Err(e) = result {
            self.fail(e);
        }
        if self.failed.is_some() {
            return;
        }
        let start = Instant::now();
        self.gpu_since.get_or_insert(start);
        match engine.submit_set(set, index, lanes.events, lanes.poll) {
            Ok((m, submit)) => {
                self.maps[set] = Some(m);
                self.on_gpu += 1;
                // `Queue::submit` itself can wait for the GPU (lavapipe runs the work before
                // it returns): that is the GPU stage's time.
                self.t.upload += start.elapsed().saturating_sub(submit);
            }
            Err(e) => {
                self.fail(e);
                if self.on_gpu == 0 {
                    self.gpu_since = None;
                }
            }
        }
    }

    /// `set`'s results are mapped: hand over every chunk now next in order.
    fn mapped(&mut self, engine: &Engine<'_>, set: usize, result: Result<()>, lanes: &Lanes<'_>) {
        self.on_gpu -= 1;
        self.maps[set] = None;
        if self.on_gpu == 0 {
            if let Some(since) = self.gpu_since.take() {
                self.t.dispatch_wall += since.elapsed();
            }
        } else if let Some(since) = self.gpu_since.as_mut() {
            // Busy time is the union of the chunks' times on the GPU.
            let now = Instant::now();
            self.t.dispatch_wall += now - *since;
            *since = now;
        }
        if let Err(e) = result {
            self.fail(e);
        }
        if self.failed.is_some() {
            engine.unmap_readbacks(set);
            return;
        }
        self.ready.insert(self.chunk_of[set], set);
        while let Some(set) = self.ready.remove(&self.next_consumed) {
            lanes.consume.send((set, self.next_consumed)).ok();
            self.next_consumed += 1;
            self.consuming += 1;
        }
    }
}

impl Books {
    /// Hands out work and takes in the stages' events until no set is out, or a stage's
    /// thread has stopped with work out (`stopped`, asked whenever nothing has come for a
    /// while, names it given the sets on the GPU).
    fn drive(
        &mut self,
        engine: &Engine<'_>,
        events: &mpsc::Receiver<Event>,
        lanes: &Lanes<'_>,
        stopped: impl Fn(usize) -> Option<&'static str>,
        progress: &mut impl FnMut(u32),
    ) {
        while self.out() > 0 {
            let event = match events.recv_timeout(Duration::from_millis(200)) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => match stopped(self.on_gpu) {
                    None => continue,
                    Some(name) => {
                        self.fail(Error::Input(format!(
                            "the pipeline's {name} thread stopped with work out"
                        )));
                        // What it held cannot come back; the sets are readied anew.
                        return;
                    }
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Every stage holds a sender while it has work: not reached.
                    self.fail(Error::Input("the pipeline's stages hung up".into()));
                    return;
                }
            };
            self.on_event(engine, event, lanes, progress);
        }
    }
}

impl Engine<'_> {
    /// Projects the whole batch through the pipeline (see the module's description and
    /// [`Projector::stream`](super::Projector::stream)).
    pub(super) fn pipeline<S, K>(
        &mut self,
        source: S,
        sink: K,
        mut progress: impl FnMut(u32),
    ) -> Result<RunTimings>
    where
        S: FnMut(Range<u32>, ElementsMut<'_>) -> Result<()> + Send,
        K: FnMut(ChunkOutput<'_>) -> Result<()> + Send,
    {
        let ctx = self.ctx;
        self.ready_sets()?;
        // Whatever was queued before (the warm-up, the weights) finishes outside the clocks.
        let index = ctx.queue.submit([]);
        ctx.wait(index, "the work queued before this run")?;
        let mut t = self.timings();
        t.threaded = true;
        let wall = Instant::now();
        let mut t = match self.run_stages(source, sink, t, &mut progress) {
            Ok(t) => t,
            Err(e) => {
                // Natively, the GPU work out has been waited for; leave the sets ready.
                let _ = self.ctx.device.poll(wgpu::PollType::wait_indefinitely());
                let _ = self.ready_sets();
                return Err(e);
            }
        };
        if t.kernel_timer == super::timing::KernelTimer::Host {
            // No timestamps: the GPU stage's time, copies included, is all there is.
            t.kernel = t.dispatch_wall;
        }
        t.wall = wall.elapsed();
        Ok(t)
    }

    /// The run itself: the producer, consumer and poller each on a thread of its own, this
    /// thread submitting and keeping the books (`t` the times so far), every set out until
    /// the last chunk is consumed or the first error. The run's times, or its first error.
    fn run_stages<S, K>(
        &self,
        source: S,
        sink: K,
        t: RunTimings,
        progress: &mut impl FnMut(u32),
    ) -> Result<RunTimings>
    where
        S: FnMut(Range<u32>, ElementsMut<'_>) -> Result<()> + Send,
        K: FnMut(ChunkOutput<'_>) -> Result<()> + Send,
    {
        let (ctx, engine) = (self.ctx, self);
        let n = engine.plan.chunks();
        let sets = engine.slots.len();
        let (events_tx, events) = mpsc::channel::<Event>();
        std::thread::scope(|scope| {
            let (produce_tx, produce_rx) = mpsc::channel::<(usize, u32)>();
            let (consume_tx, consume_rx) = mpsc::channel::<(usize, u32)>();
            let (poll_tx, poll_rx) = mpsc::channel::<(wgpu::SubmissionIndex, String)>();
            let tx = events_tx.clone();
            let producer = spawn(scope, "producer", move || {
                engine.produce(produce_rx, source, tx)
            })?;
            let tx = events_tx.clone();
            let consumer = spawn(scope, "consumer", move || {
                engine.consume(consume_rx, sink, tx)
            })?;
            let tx = events_tx.clone();
            let poller = spawn(scope, "poller", move || poll(ctx, poll_rx, tx))?;
            // A stage whose thread has ended while this one still waits on it would leave the
            // run waiting for good.
            let stopped = |on_gpu: usize| {
                [
                    ("producer", &producer),
                    ("consumer", &consumer),
                    ("poller", &poller),
                ]
                .into_iter()
                .find(|(name, t)| t.is_finished() && (*name != "poller" || on_gpu > 0))
                .map(|(name, _)| name)
            };
            let lanes = Lanes {
                produce: &produce_tx,
                consume: &consume_tx,
                poll: &poll_tx,
                events: &events_tx,
            };
            let mut books = Books::new(n, sets, t);
            // Set i starts with chunk i.
            for set in 0..sets.min(n as usize) {
                books.produce_next(set, &lanes);
            }
            books.drive(engine, &events, &lanes, stopped, progress);
            drop((produce_tx, consume_tx, poll_tx));
            books.finish()
        })
    }
}
