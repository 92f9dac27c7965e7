//! Registering, the TTL heartbeat, and the guard that deregisters.

use std::fmt;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use super::agent::{Agent, path_segment};
use super::config::{HealthCheck, RegistrationConfig};
use super::definition::check_id;
use super::error::{RegistrationError, RegistrationStep};
use crate::discovery::consul::ConsulToken;

/// Passes the TTL check every `every` until `stopped` resolves. Beats keep
/// their schedule: each waits at most until the next is due, so an agent
/// that hangs costs that beat and not the ones after it.
async fn heartbeat(
    agent: Agent,
    path: String,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let within = agent.request_timeout.min(every);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stopped => return,
        }
        let beat = agent.put(RegistrationStep::Heartbeat, &path, String::new(), within);
        tokio::select! {
            result = beat => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "consul TTL heartbeat failed");
                }
            }
            _ = &mut stopped => return,
        }
    }
}

/// Keeps a registration (and its TTL heartbeat) alive; deregisters on
/// [`deregister`](Self::deregister), or, as a fallback, when dropped inside a
/// tokio runtime.
pub struct RegistrationGuard {
    agent: Agent,
    id: String,
    heartbeat: Option<oneshot::Sender<()>>,
    done: bool,
}

impl fmt::Debug for RegistrationGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationGuard")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RegistrationGuard {
    /// Registers `config` with the agent, then starts the TTL heartbeat if
    /// the check is a TTL check.
    pub(super) async fn start(
        config: RegistrationConfig,
        token: Option<ConsulToken>,
    ) -> Result<RegistrationGuard, RegistrationError> {
        let agent = Agent::new(
            config.agent.trim_end_matches('/'),
            token,
            config.connect_timeout,
            config.request_timeout,
        );
        agent
            .put(
                RegistrationStep::Register,
                "/v1/agent/service/register",
                config.body(),
                agent.request_timeout,
            )
            .await?;
        tracing::info!(service = %config.service, id = %config.id, "registered with consul");
        let heartbeat = match config.check {
            HealthCheck::Ttl { ttl } => {
                let (stop, stopped) = oneshot::channel();
                let path = format!(
                    "/v1/agent/check/pass/{}",
                    path_segment(&check_id(&config.id))
                );
                tokio::spawn(heartbeat(agent.clone(), path, ttl / 3, stopped));
                Some(stop)
            }
            HealthCheck::Http { .. } => None,
        };
        Ok(RegistrationGuard {
            agent,
            id: config.id,
            heartbeat,
            done: false,
        })
    }

    /// The registered instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops the heartbeat and removes the instance from the agent: call it
    /// on graceful shutdown, before the server stops accepting requests, so
    /// clients stop picking this instance first.
    pub async fn deregister(mut self) -> Result<(), RegistrationError> {
        self.done = true;
        self.heartbeat.take();
        let result = self
            .agent
            .put(
                RegistrationStep::Deregister,
                &format!("/v1/agent/service/deregister/{}", path_segment(&self.id)),
                String::new(),
                self.agent.request_timeout,
            )
            .await;
        if result.is_ok() {
            tracing::info!(id = %self.id, "deregistered from consul");
        }
        result
    }
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.heartbeat.take();
        let (agent, id) = (self.agent.clone(), self.id.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let path = format!("/v1/agent/service/deregister/{}", path_segment(&id));
                    let within = agent.request_timeout;
                    let step = RegistrationStep::Deregister;
                    if let Err(e) = agent.put(step, &path, String::new(), within).await {
                        tracing::warn!(%id, error = %e, "deregistration on drop failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                %id,
                "registration guard dropped outside a tokio runtime: not deregistered \
                 (the agent removes it once its check has been critical long enough)"
            ),
        }
    }
}
