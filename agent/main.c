/*
 * main.c - the tdx-runner binary: one table of subcommands, nothing else.
 */
#include "agent/cli.h"

#include "common/secret.h"

#include <stdio.h>
#include <string.h>

static int cmd_help(int argc, char **argv);
static void help_help(void);
static int cmd_version(int argc, char **argv);
static void version_help(void);

static const struct cli_command commands[] = {
	{ "run", "run a command from this git checkout in a freshly leased, attested box", cli_run,
	  cli_run_help },
	{ "gitlab-executor", "gitlab-runner custom executor driver: config|prepare|run|cleanup",
	  cli_gitlab_executor, cli_gitlab_executor_help },
	{ "leases", "list the leased boxes recorded on this host", cli_leases, cli_leases_help },
	{ "agent", "the runner daemon: poll GitLab and GitHub, run each job in its own attested box",
	  cli_agent, cli_agent_help },
	{ "register", "check a GitLab runner token and write the agent's configuration", cli_register,
	  cli_register_help },
	{ "publish", "attach an attestation bundle to a GitHub release (publish --github-release O/R@TAG)",
	  cli_publish, cli_publish_help },
	{ "warmup", "lease and attest a box and keep it for `run --lease`", cli_warmup, cli_warmup_help },
	{ "stop", "release a kept box", cli_stop, cli_stop_help },
	{ "reap", "release every lease no live process owns", cli_reap, cli_reap_help },
	{ "verify", "verify a TDX quote, or re-verify an attestation bundle, offline", cli_verify,
	  cli_verify_help },
	{ "collateral", "fetch quote collateral from Intel PCS or a PCCS (cached per FMSPC)", cli_collateral,
	  cli_collateral_help },
	{ "simulate", "produce simulated TDX evidence and an attestation bundle (attest/sim)", cli_simulate,
	  cli_simulate_help },
	{ "guest-agent", "serve the dstack guest-agent API for a local box (simulated TDX)", cli_guest_agent,
	  cli_guest_agent_help },
	{ "ssh", "run a command (or a shell) in a leased box over TLS/SSH", cli_ssh, cli_ssh_help },
	{ "rsh", "rsync's remote shell for a leased box (rsync -e 'tdx-runner rsh LEASE')", cli_rsh,
	  cli_rsh_help },
	{ "version", "print the version", cmd_version, version_help },
	{ "help", "list the commands, or show one command's help", cmd_help, help_help },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: tdx-runner COMMAND [ARGS...]\n\n"
	             "Runs CI jobs in attested Intel TDX confidential VMs.\n\ncommands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun 'tdx-runner COMMAND --help' for a command's options.\n");
}

static const struct cli_command *find(const char *name)
{
	size_t i;

	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void help_help(void)
{
	printf("usage: tdx-runner help [COMMAND]\n\nLists the commands, or prints COMMAND's help.\n");
}

static int cmd_help(int argc, char **argv)
{
	const struct cli_command *c;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	c = find(argv[1]);
	if (c == NULL) {
		fprintf(stderr, "tdx-runner: unknown command '%s'\n", argv[1]);
		return 2;
	}
	c->help();
	return 0;
}

static void version_help(void)
{
	printf("usage: tdx-runner version\n\nPrints the version.\n");
}

static int cmd_version(int argc, char **argv)
{
	printf("tdx-runner %s\n", TDXR_VERSION);
	return 0;
}

int main(int argc, char **argv)
{
	const struct cli_command *c;
	int i;

	tdxr_secret_harden_process();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(1, argv);
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(1, argv);
	c = find(argv[1]);
	if (c == NULL) {
		fprintf(stderr, "tdx-runner: unknown command '%s' (see 'tdx-runner help')\n", argv[1]);
		return 2;
	}
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			c->help();
			return 0;
		}
	}
	return c->run(argc - 1, argv + 1);
}
