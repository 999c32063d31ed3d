//! Scheduled jobs on tokio-cron-scheduler, with the daemon's rules on top: an optional
//! jitter, never two runs of one job at once, every run recorded in the state, and a shutdown
//! that stops new runs and waits for the running ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use whittle_adapters::Adapters;
use whittle_engine::Engine;
use whittle_engine::config::JobSchedule;
use whittle_engine::jobs;
use whittle_engine::notify::{AlertKind, alert};
use whittle_engine::records::{JobHistory, JobName, JobRun, RunOutcome};

use crate::metrics::Metrics;

/// One job and its rules.
struct Runner {
    name: JobName,
    jitter: Option<Duration>,
    busy: Arc<Mutex<()>>,
    engine: Engine<Adapters>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Runner {
    /// Called by the cron scheduler on every tick. Starts a run unless one is busy.
    fn tick(self: &Arc<Self>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let Ok(guard) = self.busy.clone().try_lock_owned() else {
            warn!(
                job = %self.name,
                "Skipped a tick: the previous run is still busy"
            );
            self.metrics.run_skipped(&self.name.to_string());
            return;
        };
        let runner = Arc::clone(self);
        self.tracker.spawn(async move {
            runner.run_once().await;
            drop(guard);
        });
    }

    async fn run_once(&self) {
        if let Some(jitter) = self.jitter {
            let delay = rand::rng().random_range(Duration::ZERO..=jitter);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // Nothing started yet, so a shutdown during the jitter just drops the run.
                () = self.cancel.cancelled() => return,
            }
        }
        let history = JobHistory::new(&self.engine.state);
        let mut run = JobRun {
            job: self.name.clone(),
            started_at: self.engine.now(),
            ended_at: None,
            outcome: RunOutcome::Running,
            detail: String::new(),
        };
        if let Err(e) = history.record(&run) {
            error!(job = %self.name, error = %e, "Cannot record the start of a run; not running it");
            return;
        }
        info!(job = %self.name, "Job started");
        let started = Instant::now();
        let result = jobs::run(&self.name, &self.engine, &self.cancel).await;
        let seconds = started.elapsed().as_secs_f64();
        run.ended_at = Some(self.engine.now());
        match result {
            Ok(summary) => {
                info!(job = %self.name, seconds, %summary, "Job succeeded");
                run.outcome = RunOutcome::Succeeded;
                run.detail = summary;
            }
            Err(e) => {
                let message = whittle_engine::one_line(&e);
                error!(job = %self.name, seconds, error = %message, "Job failed");
                alert(
                    &self.engine,
                    AlertKind::JobFailed,
                    &self.name.to_string(),
                    &message,
                )
                .await;
                run.outcome = RunOutcome::Failed;
                run.detail = message;
            }
        }
        self.metrics
            .run_finished(&self.name.to_string(), run.outcome.as_str(), seconds);
        if let Err(e) = history.record(&run) {
            error!(job = %self.name, error = %e, "Cannot record the end of a run");
        }
    }
}

/// The running scheduler.
pub struct Scheduler {
    inner: JobScheduler,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Scheduler {
    /// Schedules `jobs` and starts ticking.
    pub async fn start(
        jobs: Vec<(JobName, JobSchedule)>,
        engine: &Engine<Adapters>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Scheduler> {
        let inner = JobScheduler::new().await?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        for (name, schedule) in jobs {
            metrics.declare_job(&name.to_string());
            if !schedule.enabled {
                info!(job = %name, "Job disabled in the configuration");
                continue;
            }
            let runner = Arc::new(Runner {
                name: name.clone(),
                jitter: schedule.jitter.map(|j| j.0),
                busy: Arc::new(Mutex::new(())),
                engine: engine.clone(),
                metrics: Arc::clone(&metrics),
                cancel: cancel.clone(),
                tracker: tracker.clone(),
            });
            let job = Job::new_async(schedule.cron.as_str(), move |_id, _scheduler| {
                runner.tick();
                Box::pin(async {})
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "job `{name}`: the scheduler refused cron `{}`: {e}",
                    schedule.cron.as_str()
                )
            })?;
            inner.add(job).await?;
            info!(job = %name, cron = schedule.cron.as_str(), "Job scheduled");
        }
        inner.start().await?;
        Ok(Scheduler {
            inner,
            cancel,
            tracker,
        })
    }

    /// Stops ticking, tells running jobs to stop after their current step, and waits for them.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.inner.shutdown().await {
            warn!(error = %e, "Scheduler shutdown reported an error");
        }
        self.cancel.cancel();
        self.tracker.close();
        if !self.tracker.is_empty() {
            info!(
                running = self.tracker.len(),
                "Waiting for running jobs to finish their current step"
            );
        }
        self.tracker.wait().await;
    }
}
