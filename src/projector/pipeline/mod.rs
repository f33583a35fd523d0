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

use super::buffers::{buffer_bytes, Upload};
use super::engine::{chunk_label, ChunkOutput, Engine};
use super::timing::RunTimings;
use crate::error::{Error, Result};
use crate::host::ElementsMut;
use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// What the stages tell this thread.
enum Event {
    /// The producer filled X of chunk `index` into set `set` (or failed to).
    Produced {
        set: usize,
        index: u32,
        busy: Duration,
        result: Result<()>,
    },
    /// Every buffer of set `set` was mapped after its submission (or one map failed).
    Mapped { set: usize, result: Result<()> },
    /// The consumer handed chunk `index` to the sink (or the sink failed).
    Consumed {
        set: usize,
        index: u32,
        busy: Duration,
        kernel: Duration,
        result: Result<()>,
    },
    /// Waiting for a submission failed (a lost device, an error the GPU raised).
    PollFailed(Error),
}

/// The maps of one submitted set still to complete, and the first that failed.
struct Maps {
    left: AtomicUsize,
    failed: Mutex<Option<String>>,
}

/// Starts a thread of the pipeline, named "qkv NAME".
fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    body: impl FnOnce() + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, ()>> {
    std::thread::Builder::new()
        .name(format!("qkv {name}"))
        .spawn_scoped(scope, body)
        .map_err(|e| Error::Input(format!("starting the {name} thread: {e}")))
}

/// A panic in a user's closure, as an error naming where it happened.
fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    Error::Input(format!("{what} panicked: {message}"))
}

/// The poller: waits for each submission until it is done. (Not in short waits: a wait that
/// times out while another thread submits can trip a consistency assertion in wgpu-core 30's
/// `maintain`, seen as a panic on lavapipe. Where wgpu has no timeline semaphores, as on
/// lavapipe, the wait holds the fence lock that `Queue::submit` needs; that submit then
/// waits, and its time is counted as the GPU stage's, not as upload.)
fn poll(
    ctx: &crate::context::GpuContext,
    submissions: mpsc::Receiver<(wgpu::SubmissionIndex, String)>,
    events: mpsc::Sender<Event>,
) {
    for (submission, label) in submissions {
        let waited = catch_unwind(AssertUnwindSafe(|| ctx.wait(submission, &label)))
            .unwrap_or_else(|p| Err(panicked("waiting for the GPU", p)));
        if let Err(e) = waited {
            events.send(Event::PollFailed(e)).ok();
        }
    }
}

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
                self.t.kernel += kernel;
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
        let engine = &*self;
        let n = engine.plan.chunks();
        let sets = engine.slots.len();
        let (events_tx, events) = mpsc::channel::<Event>();
        let result = std::thread::scope(|scope| {
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
            // run waiting for good: checked whenever nothing has come for a while.
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
            while books.out() > 0 {
                let event = match events.recv_timeout(Duration::from_millis(200)) {
                    Ok(event) => event,
                    Err(mpsc::RecvTimeoutError::Timeout) => match stopped(books.on_gpu) {
                        None => continue,
                        Some(name) => {
                            books.fail(Error::Input(format!(
                                "the pipeline's {name} thread stopped with work out"
                            )));
                            // What it held cannot come back; the sets are readied anew.
                            break;
                        }
                    },
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        // Every stage holds a sender while it has work: not reached.
                        books.fail(Error::Input("the pipeline's stages hung up".into()));
                        break;
                    }
                };
                books.on_event(engine, event, &lanes, &mut progress);
            }
            drop((produce_tx, consume_tx, poll_tx));
            books.finish()
        });
        let mut t = match result {
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

    /// The producer: fills X of each chunk it is given into its set's staging buffer.
    fn produce<S>(
        &self,
        jobs: mpsc::Receiver<(usize, u32)>,
        mut source: S,
        events: mpsc::Sender<Event>,
    ) where
        S: FnMut(Range<u32>, ElementsMut<'_>) -> Result<()>,
    {
        for (set, index) in jobs {
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.produce_one(set, index, &mut source)
            }))
            .unwrap_or_else(|p| Err(panicked("the source of X", p)));
            let busy = start.elapsed();
            let event = Event::Produced {
                set,
                index,
                busy,
                result,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }

    fn produce_one(
        &self,
        set: usize,
        index: u32,
        source: &mut impl FnMut(Range<u32>, ElementsMut<'_>) -> Result<()>,
    ) -> Result<()> {
        let rows = self.plan.chunk(index);
        let d = self.plan.shape.d_model as usize;
        let len = rows.len() * d;
        let s = &self.slots[set];
        let label = chunk_label(index, self.plan.chunks(), &rows);
        let map_error = |e: wgpu::MapRangeError| Error::Gpu {
            during: format!("{label}: mapping X's staging buffer"),
            message: e.to_string(),
        };
        let element = self.spec.element;
        match (self.upload, &s.x_up) {
            (Upload::Mapped, Some(up)) => {
                let bytes = element.buffer_bytes(len as u64).next_multiple_of(4);
                let mut view = up
                    .slice(..bytes)
                    .get_mapped_range_mut()
                    .map_err(map_error)?;
                source(rows, ElementsMut::from_bytes(element, view.slice(..), len))
            }
            (Upload::MappedConverted, Some(up)) => {
                let mut host = s.x_host.lock().expect("no panic holds it");
                source(rows.clone(), host.as_mut().slice_mut(0..len))?;
                let x = host.as_ref().slice(0..len);
                self.check_input_range(x, &rows)?;
                let input = self.spec.input_element();
                let stride = self.spec.x_stride(d as u32) as usize;
                let mut scratch = s.x_bytes.lock().expect("no panic holds it");
                let bytes = buffer_bytes((x, input), (d, stride), &mut scratch);
                let mapped = (bytes.len() as u64).next_multiple_of(4);
                let mut view = up
                    .slice(..mapped)
                    .get_mapped_range_mut()
                    .map_err(map_error)?;
                view.slice(..bytes.len()).copy_from_slice(bytes);
                Ok(())
            }
            // Textures: the host copy, which this thread uploads through the queue.
            _ => {
                let mut host = s.x_host.lock().expect("no panic holds it");
                source(rows, host.as_mut().slice_mut(0..len))
            }
        }
    }

    /// Submits chunk `index`, produced into set `set`: X's staging buffer unmapped and copied
    /// to X (or X written by the queue), the chunk's work, then every map the next stages
    /// need (Q, K, V and the timestamps for reading, X's staging buffer for writing again),
    /// which report to `events` when all are done; the submission goes to the poller.
    fn submit_set(
        &self,
        set: usize,
        index: u32,
        events: &mpsc::Sender<Event>,
        poll: &mpsc::Sender<(wgpu::SubmissionIndex, String)>,
    ) -> Result<(Arc<Maps>, Duration)> {
        let ctx = self.ctx;
        let rows = self.plan.chunk(index);
        let count = rows.len() as u32;
        let label = chunk_label(index, self.plan.chunks(), &rows);
        let s = &self.slots[set];
        let x_bytes = match &s.x_up {
            Some(up) => {
                up.unmap();
                s.x_up_mapped.store(false, Ordering::Release);
                let stride = self.spec.x_stride(self.plan.shape.d_model) as u64;
                let input = self.spec.input_element();
                Some((
                    up,
                    input
                        .buffer_bytes(count as u64 * stride)
                        .next_multiple_of(4),
                ))
            }
            None => {
                self.upload_queued(set, &rows, &label)?;
                None
            }
        };
        self.write_params(&s.params, count)?;
        let kernel_label = format!("{label}: dispatch of kernel {}", self.spec);
        let encoder = self.encode_chunk(set, count, &kernel_label, |encoder| {
            if let (Some((up, bytes)), Some(x)) = (x_bytes, s.x.buffer()) {
                encoder.copy_buffer_to_buffer(up, 0, x, 0, bytes);
            }
        })?;
        let start = Instant::now();
        let submission = ctx.checked(&kernel_label, || ctx.queue.submit([encoder.finish()]))?;
        let submit = start.elapsed();

        let readbacks = self.readback_buffers(set, count as usize);
        let total = readbacks.len() + usize::from(s.x_up.is_some());
        let maps = Arc::new(Maps {
            left: AtomicUsize::new(total),
            failed: Mutex::new(None),
        });
        let request = |buffer: &wgpu::Buffer,
                       bytes: Option<u64>,
                       mode: wgpu::MapMode,
                       mapped: Option<Arc<AtomicBool>>| {
            let (maps, events) = (maps.clone(), events.clone());
            let label = format!("{label}: mapping its buffers");
            let callback = move |r: std::result::Result<(), wgpu::BufferAsyncError>| {
                if let (Ok(()), Some(flag)) = (&r, &mapped) {
                    flag.store(true, Ordering::Release);
                }
                if let Err(e) = r {
                    maps.failed
                        .lock()
                        .expect("no panic holds it")
                        .get_or_insert(e.to_string());
                }
                if maps.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let failed = maps.failed.lock().expect("no panic holds it").take();
                    let result = match failed {
                        None => Ok(()),
                        Some(e) => Err(Error::Readback(format!("{label}: {e}"))),
                    };
                    events.send(Event::Mapped { set, result }).ok();
                }
            };
            match bytes {
                Some(bytes) => buffer.slice(..bytes).map_async(mode, callback),
                None => buffer.slice(..).map_async(mode, callback),
            }
        };
        for (buffer, bytes) in readbacks {
            request(buffer, Some(bytes), wgpu::MapMode::Read, None);
        }
        if let Some(up) = &s.x_up {
            // Whole, ready for any chunk the set gets next.
            request(up, None, wgpu::MapMode::Write, Some(s.x_up_mapped.clone()));
        }
        // Only now to the poller: its wait resolves the maps requested before it (a map
        // requested after the last poll would wait for a poll that never comes).
        poll.send((submission, format!("{label}: waiting for the GPU")))
            .ok();
        Ok((maps, submit))
    }

    /// The consumer: hands each chunk it is given to the sink, in place.
    fn consume<K>(
        &self,
        jobs: mpsc::Receiver<(usize, u32)>,
        mut sink: K,
        events: mpsc::Sender<Event>,
    ) where
        K: FnMut(ChunkOutput<'_>) -> Result<()>,
    {
        // After the sink fails, the chunks already on their way are not handed to it.
        let mut sink_failed = false;
        for (set, index) in jobs {
            if sink_failed {
                self.unmap_readbacks(set);
                let event = Event::Consumed {
                    set,
                    index,
                    busy: Duration::ZERO,
                    kernel: Duration::ZERO,
                    result: Ok(()),
                };
                if events.send(event).is_err() {
                    return;
                }
                continue;
            }
            let start = Instant::now();
            let rows = self.plan.chunk(index);
            let label = format!(
                "{}: reading Q, K, V back",
                chunk_label(index, self.plan.chunks(), &rows)
            );
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.hand_over(set, (index, rows), &mut sink, &label)
            }))
            .unwrap_or_else(|p| {
                self.unmap_readbacks(set);
                Err(panicked("the sink of Q, K, V", p))
            });
            let (kernel, result) = match result {
                Ok(kernel) => (kernel, Ok(())),
                Err(e) => {
                    sink_failed = true;
                    (Duration::ZERO, Err(e))
                }
            };
            let event = Event::Consumed {
                set,
                index,
                busy: start.elapsed(),
                kernel,
                result,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }

    /// Unmaps `buffer` whatever its state: a map still pending is aborted (its callback
    /// reports it), and one never made is no error (wgpu would report it as one).
    fn unmap_any(&self, buffer: &wgpu::Buffer) {
        let scope = self
            .ctx
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        buffer.unmap();
        // The scope holds "not mapped", which is what is expected here, or nothing.
        drop(scope.pop());
    }

    /// Unmaps set `set`'s readback buffers (a map still pending is aborted).
    fn unmap_readbacks(&self, set: usize) {
        for (b, _) in self.readback_buffers(set, 0) {
            self.unmap_any(b);
        }
    }

    /// Aborts set `set`'s maps still pending (their callbacks report the abort), and
    /// unmaps what is mapped.
    fn abort_maps(&self, set: usize) {
        self.unmap_readbacks(set);
        if let Some(up) = &self.slots[set].x_up {
            self.unmap_any(up);
            self.slots[set].x_up_mapped.store(false, Ordering::Release);
        }
    }

    /// Readies every set for a run: readback buffers unmapped, X's staging buffers mapped
    /// for writing (as they are after a run that ended well).
    fn ready_sets(&self) -> Result<()> {
        let mut pending = Vec::new();
        for (set, s) in self.slots.iter().enumerate() {
            self.unmap_readbacks(set);
            if let Some(up) = &s.x_up {
                if !s.x_up_mapped.load(Ordering::Acquire) {
                    self.unmap_any(up);
                    let (sender, receiver) = mpsc::channel();
                    up.slice(..).map_async(wgpu::MapMode::Write, move |r| {
                        sender.send(r).ok();
                    });
                    pending.push((set, receiver));
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Poll {
                during: "mapping X's staging buffers".into(),
                message: e.to_string(),
            })?;
        for (set, r) in pending {
            match r.recv() {
                Ok(Ok(())) => self.slots[set].x_up_mapped.store(true, Ordering::Release),
                Ok(Err(e)) => {
                    return Err(Error::Readback(format!("mapping X's staging buffers: {e}")))
                }
                Err(_) => {
                    return Err(Error::Readback(
                        "mapping X's staging buffers: never completed".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}
