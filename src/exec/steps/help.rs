//! `/help`: usage generated from the command declarations.

use crate::app::App;
use crate::exec::OperationInput;

use super::StepOutcome;

/// Usage of the `command` argument, or one line per command.
pub fn run(app: &App, input: &OperationInput<'_>) -> StepOutcome {
    if let Some(command) = input.action.args.command("command")
        && let Some(spec) = app.catalog.get(command.as_str())
    {
        let help = spec.help_text(&app.config);
        let mut lines = help.lines().map(str::to_string);
        let summary = lines.next().unwrap_or_default();
        return StepOutcome {
            summary,
            output: lines.collect(),
        };
    }
    let output = app
        .catalog
        .commands()
        .map(|spec| format!("{:<42} {}", spec.usage(), spec.summary))
        .collect();
    StepOutcome {
        summary: format!("{} commands; /help COMMAND explains one", app.catalog.len()),
        output,
    }
}
