//! The dispatch: the parsed command line ([`crate::cli`]) turned into settings inputs
//! ([`flags`]), checked by [`crate::settings`] (or, for `run`, merged with the jobs file by
//! [`crate::jobs`]), then handed to the pipeline, the jobs runner, the check or the sandbox,
//! and the outcome printed by [`crate::output`]. The only module that reads clap types.

mod flags;
mod sandbox;

use crate::cli::{CheckTarget, Cli, Command, ExportTarget, SchemaTarget};
use crate::error::{Error, Result};
use crate::pipeline::{self, Stopped};
use crate::settings::{self, ExportSettings, ExportSource, Flags};
use crate::signals::Signal;
use crate::{check, inspect, jobs, output, session};

/// Runs the parsed command line.
///
/// An export catches SIGINT and SIGTERM from before its destination is opened: it stops,
/// leaves the destination as it was and fails with [`Error::Interrupted`], whose exit code is
/// 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
pub async fn run(cli: Cli) -> Result<()> {
    let interrupt = match &cli.command {
        Command::Export { .. } => Some(Signal::listen()?),
        Command::Run(args) if !args.check => Some(Signal::listen()?),
        _ => None,
    };
    let api = || flags::api(&cli.connection);
    match &cli.command {
        Command::Reports { json, fields } => {
            let fields = settings::reports::report_fields(&Flags, &flags::report_fields(fields))?;
            let api = api()?;
            let rows = with_progress(session::list_reports(&api, &fields))
                .await?
                .requests;
            if *json {
                output::print_reports_json(&rows)
            } else {
                output::print_reports_table(&rows)
            }
        }
        Command::Schema {
            target: SchemaTarget::Report { id },
        } => {
            let id = settings::reports::report_ids(&Flags, std::slice::from_ref(id))?;
            let api = api()?;
            let schema = with_progress(pipeline::report_schema(&api, &id[0])).await?;
            output::print_schema(&schema)
        }
        Command::Schema {
            target: SchemaTarget::Url { endpoint },
        } => {
            let spec = settings::endpoint::endpoint(&Flags, &flags::endpoint(endpoint)?)?;
            let api = api()?;
            let schema = pipeline::endpoint_schema(&api, &spec).await?;
            output::print_schema(&schema)
        }
        Command::Export { target } => {
            let (source, output) = match target {
                ExportTarget::Report { ids, output } => (
                    ExportSource::CompletedReports(settings::reports::report_ids(&Flags, ids)?),
                    output,
                ),
                ExportTarget::Reports { output } => (ExportSource::ReportList, output),
                ExportTarget::Url { endpoint, output } => {
                    let spec = settings::endpoint::endpoint(&Flags, &flags::endpoint(endpoint)?)?;
                    (ExportSource::Endpoint(Box::new(spec)), output)
                }
            };
            let concurrency = settings::check(
                &Flags,
                settings::field::CONCURRENCY,
                output.concurrency,
                settings::output::concurrency,
            )?;
            let api = api()?;
            let output = settings::output::output(&Flags, &flags::output(output))?;
            let settings = ExportSettings {
                api,
                source,
                output,
                concurrency,
            };
            let interrupt = interrupt
                .ok_or_else(|| Error::Internal("no signal handler for the export".into()))?;
            match with_progress(pipeline::export_until(&settings, interrupt)).await {
                Ok(summary) => {
                    output::print_export_summary(&summary, settings.output.destination.display())
                }
                Err(Stopped::Failed(e)) => Err(e),
                Err(Stopped::Interrupted(signal)) => Err(signal.into()),
            }
        }
        Command::Check { target } => {
            let (source, out) = match target {
                CheckTarget::Report { id, out } => (
                    ExportSource::CompletedReports(settings::reports::report_ids(
                        &Flags,
                        std::slice::from_ref(id),
                    )?),
                    out,
                ),
                CheckTarget::Url { endpoint, out } => {
                    let spec = settings::endpoint::endpoint(&Flags, &flags::endpoint(endpoint)?)?;
                    (ExportSource::Endpoint(Box::new(spec)), out)
                }
            };
            let print = |report: check::Report<'_>| output::write_stdout(&report.text());
            check::check(&api()?, &source, out.as_deref(), print).await
        }
        Command::Inspect { dest, json } => {
            let inspection = inspect::inspect(dest).await?;
            if *json {
                output::print_inspection_json(&inspection)?;
            } else {
                output::print_inspection(&inspection)?;
            }
            inspection.verdict()
        }
        Command::Run(args) => {
            let settings = jobs::RunSettings::new(flags::run(args, &cli.connection))?;
            if args.check {
                let print = |report: check::Report<'_>| output::write_stdout(&report.text());
                return check::jobs(&settings, print).await;
            }
            let interrupt =
                interrupt.ok_or_else(|| Error::Internal("no signal handler for the run".into()))?;
            let summary = with_progress(jobs::run(&settings, interrupt)).await?;
            output::write_stdout(&summary.table())?;
            if let Some(path) = &settings.summary_json {
                jobs::summary::write_json(path, &summary)?;
            }
            summary.result()
        }
        Command::Sandbox(args) => {
            let (addr, options) = sandbox::options(args)?;
            sandbox::serve(addr, options).await
        }
    }
}

/// Runs `work` with progress drawn on a terminal, cleared before anything is printed.
async fn with_progress<T>(work: impl std::future::Future<Output = T>) -> T {
    let _progress = crate::progress::start();
    work.await
}
