//! `shed`: reservations that a gateway refuses before any Redis or RabbitMQ work (its request-rate bound, its
//! in-flight bound or an open circuit breaker), distinct buyers for D seconds. Point it at a gateway started to
//! refuse (`make bench` starts one with `gateway.max_requests_per_sec = 1`); the figure to compare with is the
//! ceiling: what a refusal costs on top of `/healthz`.

use crate::engine::Plan;
use crate::report::{Report, Verification};
use crate::scenarios::{Context, ran_out};

/// Share of answers that must be the shedding 503 (the bound lets a few requests through each second).
const SHED_SHARE: f64 = 0.99;

pub async fn shed(ctx: &Context, plan: Plan, buyers: usize) -> anyhow::Result<Report> {
    let auths = ctx.mint(buyers)?;
    // No sale is created: on a shedding gateway the admin API is refused too, and a refusal never looks.
    let m = ctx.fire(plan, ctx.reservations(1)?, Some(auths)).await;
    let mut report = Report::from_measured("shed", plan.concurrency, plan.rate, &m);
    ran_out(&mut report, plan, &m, buyers);
    let refused = m.count("503 UNAVAILABLE");
    let share = refused as f64 / m.requests.max(1) as f64;
    let mut problems = Vec::new();
    if share < SHED_SHARE {
        problems.push(format!(
            "only {refused} of {} answers were 503 UNAVAILABLE: is the gateway shedding?",
            m.requests
        ));
    }
    report.verification = Some(Verification {
        clean: problems.is_empty(),
        checked: format!("{refused} of {} answers 503 UNAVAILABLE", m.requests),
        problems,
    });
    Ok(report)
}
