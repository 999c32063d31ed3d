//! Logs go to stderr, human or JSON; stdout is reserved for data.

use tracing_subscriber::EnvFilter;

use whittle_engine::config::LogFormat;

/// Installs the global subscriber. `verbosity` is -v count minus -q count: it moves the
/// configured level up or down for whittle's own modules without touching the rest.
pub fn init(format: LogFormat, level: &str, verbosity: i8) -> anyhow::Result<()> {
    let mut filter = EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{level}`: {e}"))?;
    // When no provider in the credentials chain yields credentials, the chain logs each
    // failure as a warning with the provider's whole Debug dump, and the call then fails with
    // the same cause, which whittle reports in one line. Keep those warnings for a filter that
    // asks for aws_config explicitly.
    if !level.contains("aws_config") {
        filter = filter.add_directive("aws_config::meta::credentials::chain=error".parse()?);
    }
    let shifted = match verbosity {
        v if v >= 2 => Some("whittle=trace"),
        1 => Some("whittle=debug"),
        -1 => Some("warn"),
        v if v <= -2 => Some("error"),
        _ => None,
    };
    if let Some(directive) = shifted {
        filter = filter.add_directive(directive.parse()?);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
