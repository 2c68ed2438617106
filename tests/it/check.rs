//! `deckhand check`: the shipped config passes; broken ones list every
//! problem with file and line and exit 1.

use crate::support::workspace::{Workspace, stdout};

#[test]
fn shipped_config_passes() {
    let workspace = Workspace::shipped();
    let output = workspace.run(&["check"], "");
    assert_eq!(stdout(&output), "ok: 15 commands, 2 environments\n");
    assert!(output.status.success());
}

#[test]
fn broken_config_lists_every_problem_with_file_and_line() {
    let workspace = Workspace::with_config(|text| {
        text.replace(
            "host = \"local\"\ncompose_project = \"deckhand-demo\"",
            "compose_project = \"deckhand-demo\"",
        )
        .replace(
            "roles = [\"developers\"]\nconsole = \"erin\"",
            "roles = [\"developer\"]\nconsole = \"erin\"",
        )
        .replace(
            "docker = \"unix:///var/run/docker.sock\"",
            "docker = \"unix:///var/run/docker.sock\"\ntls_verify = true",
        )
    });
    let output = workspace.run(&["check"], "");
    let config = workspace.config_path();
    let config = config.display();
    assert_eq!(
        stdout(&output),
        format!(
            "{config}:78: unknown field `tls_verify`, expected one of `docker`, `tls`, `ssh_key`, `timeout`\n1 problem(s) found\n"
        )
    );
    assert_eq!(output.status.code(), Some(1));

    let workspace = Workspace::with_config(|text| {
        text.replace(
            "host = \"local\"\ncompose_project = \"deckhand-demo\"",
            "compose_project = \"deckhand-demo\"",
        )
        .replace(
            "roles = [\"developers\"]\nconsole = \"erin\"",
            "roles = [\"developer\"]\nconsole = \"erin\"",
        )
    });
    let output = workspace.run(&["check"], "");
    let config = workspace.config_path();
    let config = config.display();
    assert_eq!(
        stdout(&output),
        format!(
            "{config}:71: users[5].roles[0]: no role named \"developer\" (defined: dba, deployers, developers, oncall)\n\
             {config}:85: environments.staging: environment \"staging\" has no Docker host; add host = \"NAME\" (defined: local)\n\
             2 problem(s) found\n"
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn broken_command_file_is_reported_with_file_and_line() {
    let commands = tempfile::tempdir().expect("temporary folder");
    for entry in std::fs::read_dir(crate::support::workspace::repo_root().join("commands"))
        .expect("commands")
    {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            commands.path().join(path.file_name().expect("file name")),
        )
        .expect("copy");
    }
    let logs = commands.path().join("logs.toml");
    let text = std::fs::read_to_string(&logs).expect("logs.toml");
    std::fs::write(
        &logs,
        text.replace(
            "pattern = \"^[A-Za-z0-9 ._:=/-]{1,100}$\"",
            "pattern = \"^[A-Za-z0-9 ._:=/-{1,100}$\"",
        ),
    )
    .expect("write");
    let deploy = commands.path().join("deploy.toml");
    let text = std::fs::read_to_string(&deploy).expect("deploy.toml");
    std::fs::write(
        &deploy,
        text.replace(
            "approvers = [\"deployers\"]",
            "approvers = [\"release-managers\"]",
        ),
    )
    .expect("write");
    let commands_dir = commands.path().display().to_string();
    let workspace = Workspace::with_config(|text| {
        let shipped_commands = crate::support::workspace::repo_root().join("commands");
        text.replace(&shipped_commands.display().to_string(), &commands_dir)
    });
    let output = workspace.run(&["check"], "");
    assert_eq!(
        stdout(&output),
        format!(
            "{commands_dir}/deploy.toml:27: policy.production.approvers[0]: no role named \"release-managers\" (defined: dba, deployers, developers, oncall)\n\
             {commands_dir}/logs.toml:40: args[4].pattern: bad regex \"^[A-Za-z0-9 ._:=/-{{1,100}}$\": error: unclosed character class\n\
             2 problem(s) found\n"
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn check_warns_about_group_only_identities_and_refuses_an_id_given_to_two_people() {
    let workspace = Workspace::with_config(|text| {
        text.replace(
            "[roles.dba]\n",
            "[roles.dba]\ndiscord_roles = [\"200000000000000001\"]\n",
        )
    });
    let output = workspace.run(&["check"], "");
    assert!(output.status.success(), "{}", stdout(&output));
    let warnings = String::from_utf8_lossy(&output.stderr);
    for warning in [
        "warning: people who hold role dba only through a Slack user group or Discord role, without a [[users]] entry for that account, may request but not approve",
        "warning: [console] impersonation = true: whoever runs deckhand console against this store may act as any configured person",
    ] {
        assert!(
            warnings.contains(warning),
            "missing {warning:?} in:\n{warnings}"
        );
    }

    let workspace = Workspace::with_config(|text| {
        text.replace("slack = \"U0BOB0001\"", "slack = \"U0ALICE01\"")
    });
    let output = workspace.run(&["check"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output)
            .contains("users[1].slack: slack \"U0ALICE01\" is already given to another user"),
        "{}",
        stdout(&output)
    );
}
