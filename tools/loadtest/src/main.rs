//! `flashsale-loadtest`: measures the first second of a sale against a running gateway, and verifies what was
//! sold. Scenarios: `ceiling` (the HTTP ceiling: `/healthz`), `race` (N buyers for S units), `flood` (the
//! sold-out path), `sustain` (the success path, and how fast order-writer keeps up), `writer` (order-writer
//! draining a backlog), `expiry` (unpaid reservations released at their deadline), `pay` (orders paid by
//! signed webhooks) and `sse` (the live stock feed's streams during a race). Reads the same settings as the
//! services (admin token, JWT secret, PostgreSQL and RabbitMQ URLs). Exits non-zero when verification fails:
//! an oversell, a lost or a duplicated order.

mod buyers;
mod engine;
mod lifecycle;
mod pay;
mod recorder;
mod redis_bench;
mod report;
mod scenarios;
mod shed;
mod sse;
mod table;
mod writer;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use engine::{Plan, Until};
use flashsale_platform::Settings;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Load tool for flashsale", version)]
struct Cli {
    /// Base URL of the gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    gateway: String,
    /// Print the report as one JSON object on standard output (and no progress bar).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

/// How requests are fired.
#[derive(Args, Clone, Copy)]
struct Load {
    /// Requests in flight at most (closed loop: exactly this many; also the number of connections).
    #[arg(long, short = 'c', default_value_t = 500)]
    concurrency: usize,
    /// Open loop: send this many requests per second on a fixed schedule, and measure latency from when each
    /// request was due (no coordinated omission). Without it the run is closed loop.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Args, Clone, Copy)]
struct Timed {
    /// Seconds of load.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Most distinct buyers to mint (one request each); by default enough for the duration at the given
    /// `--rate`, or at 40,000 req/s in closed loop. The run stops early, and says so, if they run out.
    #[arg(long)]
    buyers: Option<usize>,
}

impl Timed {
    fn plan(self, load: Load) -> Plan {
        Plan {
            concurrency: load.concurrency,
            rate: load.rate,
            until: Until::Elapsed(Duration::from_secs_f64(self.duration)),
        }
    }

    fn buyers(self, load: Load) -> usize {
        self.buyers.unwrap_or_else(|| {
            let per_sec = load.rate.map_or(40_000.0, |r| r * 1.05);
            (per_sec * self.duration).ceil() as usize
        })
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// The same client against `/healthz`: the HTTP ceiling of this server on this machine.
    Ceiling {
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        timed: Timed,
    },
    /// N requests against `/healthz`, fired like a race (the same count and concurrency): what a burst of that
    /// shape costs on the cheapest endpoint, connection start-up included. The race's yardstick.
    Burst {
        #[command(flatten)]
        load: Load,
        #[arg(long, short = 'n', default_value_t = 7000)]
        requests: usize,
    },
    /// N distinct buyers race for S units, one reservation each; then the result is verified in PostgreSQL.
    Race {
        #[command(flatten)]
        load: Load,
        #[arg(long, short = 'n', default_value_t = 7000)]
        buyers: usize,
        #[arg(long, short = 's', default_value_t = 100)]
        stock: i64,
    },
    /// The sold-out path: a sale whose only unit is gone, distinct buyers for D seconds.
    Flood {
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        timed: Timed,
    },
    /// Reservations refused before any Redis or RabbitMQ work, distinct buyers for D seconds: point it at a
    /// gateway that sheds (request-rate bound, in-flight bound or an open breaker); every answer should be 503.
    Shed {
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        timed: Timed,
    },
    /// The success path: a sale large enough that every request reserves, distinct buyers for D seconds; reports
    /// how long after the last 202 the last row is in PostgreSQL, and the gateway's peak resident memory.
    Sustain {
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        timed: Timed,
    },
    /// N reservations with a short payment window, left unpaid: reports the release lag (p50/p99/max, from
    /// each `order.expired` notification) and verifies that every unit came back exactly once. Needs the
    /// expiry service.
    Expiry {
        #[arg(long, short = 'c', default_value_t = 500)]
        concurrency: usize,
        #[arg(long, short = 'n', default_value_t = 10_000)]
        reservations: usize,
    },
    /// N orders paid at once through signed webhooks (one `payment.succeeded` each): reports webhooks/s and
    /// verifies every order is paid with shipping priorities exactly 1..N in paid order. Needs the payment
    /// service.
    Pay {
        /// Base URL of the payment service.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        payment: String,
        #[arg(long, short = 'c', default_value_t = 500)]
        concurrency: usize,
        #[arg(long, short = 'n', default_value_t = 10_000)]
        orders: usize,
    },
    /// N clients follow the sale's live stock feed (Server-Sent Events) while B buyers race for S units:
    /// reports, per client, the time from the last 202 to its `sold_out` event (p50/p99/max; target: all within
    /// 1 s) and the gateway's resident memory with the streams open.
    Sse {
        #[command(flatten)]
        load: Load,
        /// Streams to open.
        #[arg(long, default_value_t = 10_000)]
        streams: usize,
        #[arg(long, short = 'n', default_value_t = 7000)]
        buyers: usize,
        #[arg(long, short = 's', default_value_t = 100)]
        stock: i64,
        /// The gateway's process id: its VmRSS is read from /proc (else from its /metrics).
        #[arg(long)]
        gateway_pid: Option<u32>,
    },
    /// order-writer's own ceiling: publishes N `reservation.created` messages to a queue of its own, then starts
    /// an order-writer (in this process, same code and settings) on that backlog and times the drain.
    Writer {
        #[arg(long, short = 'n', default_value_t = 100_000)]
        orders: usize,
    },
    /// Prints, one a line, the arguments of `redis-benchmark` for an EVALSHA of the reservation script on a
    /// sale of its own (key prefix `<redis.key_prefix>bench-<run>:`).
    EvalshaArgs,
    /// Deletes the queues and exchanges of `amqp.prefix` and the Redis keys under `redis.key_prefix` (what
    /// `make bench` runs after its own prefixes; refuses the default ones).
    Teardown,
    /// Prints the table of one `make bench` run from the JSON reports in DIR.
    Table {
        dir: std::path::PathBuf,
        /// redis-benchmark's EVALSHA requests per second.
        #[arg(long)]
        evalsha: f64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    let ctx = scenarios::Context::new(&cli.gateway, settings, cli.json)?;
    let report = match cli.scenario {
        Scenario::Ceiling { load, timed } => {
            scenarios::healthz(&ctx, "ceiling", timed.plan(load)).await?
        }
        Scenario::Burst { load, requests } => {
            let plan = Plan {
                concurrency: load.concurrency,
                rate: load.rate,
                until: Until::Requests(requests),
            };
            scenarios::healthz(&ctx, "burst", plan).await?
        }
        Scenario::Race {
            load,
            buyers,
            stock,
        } => {
            let plan = Plan {
                concurrency: load.concurrency,
                rate: load.rate,
                until: Until::Requests(buyers),
            };
            scenarios::race(&ctx, plan, buyers, stock).await?
        }
        Scenario::Flood { load, timed } => {
            scenarios::flood(&ctx, timed.plan(load), timed.buyers(load)).await?
        }
        Scenario::Shed { load, timed } => {
            shed::shed(&ctx, timed.plan(load), timed.buyers(load)).await?
        }
        Scenario::Sustain { load, timed } => {
            scenarios::sustain(&ctx, timed.plan(load), timed.buyers(load)).await?
        }
        Scenario::Expiry {
            concurrency,
            reservations,
        } => lifecycle::expiry(&ctx, concurrency, reservations).await?,
        Scenario::Pay {
            payment,
            concurrency,
            orders,
        } => {
            let payment = reqwest::Url::parse(&payment).context("--payment is not a URL")?;
            pay::pay(&ctx, &payment, concurrency, orders).await?
        }
        Scenario::Sse {
            load,
            streams,
            buyers,
            stock,
            gateway_pid,
        } => {
            let plan = Plan {
                concurrency: load.concurrency,
                rate: load.rate,
                until: Until::Requests(buyers),
            };
            sse::sse(&ctx, plan, streams, buyers, stock, gateway_pid).await?
        }
        Scenario::Writer { orders } => writer::drain_backlog(&ctx, orders).await?,
        Scenario::EvalshaArgs => {
            for arg in redis_bench::evalsha_args(&ctx).await? {
                println!("{arg}");
            }
            return Ok(());
        }
        Scenario::Teardown => {
            return redis_bench::teardown(
                &ctx,
                &[
                    scenarios::PAYMENT_WINDOW_SECS,
                    scenarios::EXPIRY_WINDOW_SECS,
                ],
            )
            .await;
        }
        Scenario::Table { dir, evalsha } => return table::print(&dir, evalsha),
    };
    report.print(cli.json)?;
    report.verdict()
}
