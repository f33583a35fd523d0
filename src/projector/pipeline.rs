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
            // The poller waits for each submission until it is done. (Not in short waits: a
            // wait that times out while another thread submits can trip a consistency
            // assertion in wgpu-core 30's `maintain`, seen as a panic on lavapipe. Where wgpu
            // has no timeline semaphores, as on lavapipe, the wait holds the fence lock that
            // `Queue::submit` needs; that submit then waits, and its time is counted as the
            // GPU stage's, not as upload.)
            let poller = spawn(scope, "poller", move || {
                for (submission, label) in poll_rx {
                    let waited = catch_unwind(AssertUnwindSafe(|| ctx.wait(submission, &label)))
                        .unwrap_or_else(|p| Err(panicked("waiting for the GPU", p)));
                    if let Err(e) = waited {
                        tx.send(Event::PollFailed(e)).ok();
                    }
                }
            })?;
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

            // The books: what each set holds, how many are at each stage.
            let mut chunk_of = vec![0u32; sets];
            let mut next = 0u32;
            let (mut producing, mut on_gpu, mut consuming) = (0usize, 0usize, 0usize);
            let mut maps: Vec<Option<Arc<Maps>>> = (0..sets).map(|_| None).collect();
            let mut ready = BTreeMap::new();
            let mut next_consumed = 0u32;
            let mut gpu_since: Option<Instant> = None;
            let mut failed: Option<Error> = None;
            let fail = |failed: &mut Option<Error>, e: Error| {
                failed.get_or_insert(e);
            };
            // Set i starts with chunk i.
            for (set, chunk) in chunk_of.iter_mut().enumerate().take(n as usize) {
                *chunk = next;
                produce_tx.send((set, next)).ok();
                next += 1;
                producing += 1;
            }
            while producing + on_gpu + consuming > 0 {
                let event = match events.recv_timeout(Duration::from_millis(200)) {
                    Ok(event) => event,
                    Err(mpsc::RecvTimeoutError::Timeout) => match stopped(on_gpu) {
                        None => continue,
                        Some(name) => {
                            fail(
                                &mut failed,
                                Error::Input(format!(
                                    "the pipeline's {name} thread stopped with work out"
                                )),
                            );
                            // What it held cannot come back; the sets are readied anew.
                            break;
                        }
                    },
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        // Every stage holds a sender while it has work: not reached.
                        fail(
                            &mut failed,
                            Error::Input("the pipeline's stages hung up".into()),
                        );
                        break;
                    }
                };
                match event {
                    Event::Produced {
                        set,
                        index,
                        busy,
                        result,
                    } => {
                        producing -= 1;
                        t.input += busy;
                        if let Err(e) = result {
                            fail(&mut failed, e);
                        }
                        if failed.is_some() {
                            continue;
                        }
                        let start = Instant::now();
                        gpu_since.get_or_insert(start);
                        match engine.submit_set(set, index, &events_tx, &poll_tx) {
                            Ok((m, submit)) => {
                                maps[set] = Some(m);
                                on_gpu += 1;
                                // `Queue::submit` itself can wait for the GPU (lavapipe runs
                                // the work before it returns): that is the GPU stage's time.
                                t.upload += start.elapsed().saturating_sub(submit);
                            }
                            Err(e) => {
                                fail(&mut failed, e);
                                if on_gpu == 0 {
                                    gpu_since = None;
                                }
                            }
                        }
                    }
                    Event::Mapped { set, result } => {
                        on_gpu -= 1;
                        maps[set] = None;
                        if on_gpu == 0 {
                            if let Some(since) = gpu_since.take() {
                                t.dispatch_wall += since.elapsed();
                            }
                        } else if let Some(since) = gpu_since.as_mut() {
                            // Busy time is the union of the chunks' times on the GPU.
                            let now = Instant::now();
                            t.dispatch_wall += now - *since;
                            *since = now;
                        }
                        if let Err(e) = result {
                            fail(&mut failed, e);
                        }
                        if failed.is_some() {
                            engine.unmap_readbacks(set);
                            continue;
                        }
                        ready.insert(chunk_of[set], set);
                        while let Some(set) = ready.remove(&next_consumed) {
                            consume_tx.send((set, next_consumed)).ok();
                            next_consumed += 1;
                            consuming += 1;
                        }
                    }
                    Event::Consumed {
                        set,
                        index,
                        busy,
                        kernel,
                        result,
                    } => {
                        consuming -= 1;
                        t.readback += busy;
                        t.kernel += kernel;
                        match result {
                            Ok(()) if failed.is_none() => progress(engine.plan.chunk(index).end),
                            Ok(()) => {}
                            Err(e) => fail(&mut failed, e),
                        }
                        if failed.is_none() && next < n {
                            chunk_of[set] = next;
                            produce_tx.send((set, next)).ok();
                            next += 1;
                            producing += 1;
                        }
                    }
                    Event::PollFailed(e) => {
                        fail(&mut failed, e);
                        // Maps that will never complete are aborted (their callbacks then
                        // report it), so that every chunk out comes home.
                        for (set, m) in maps.iter().enumerate() {
                            if m.is_some() {
                                engine.abort_maps(set);
                            }
                        }
                    }
                }
            }
            drop((produce_tx, consume_tx, poll_tx));
            match failed {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        if let Err(e) = result {
            // Natively, the GPU work out has been waited for; leave the sets ready.
            let _ = self.ctx.device.poll(wgpu::PollType::wait_indefinitely());
            let _ = self.ready_sets();
            return Err(e);
        }
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
