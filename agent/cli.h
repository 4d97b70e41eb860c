/*
 * cli.h - the tdx-runner subcommands. main.c dispatches through one explicit
 * table; each command parses its own flags and prints its own --help.
 * Exit codes: 0 success, 1 the command ran and the answer is "no" (e.g. a
 * verdict that fails policy), 2 usage or I/O errors.
 */
#ifndef TDXR_AGENT_CLI_H
#define TDXR_AGENT_CLI_H

struct cli_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
	void (*help)(void);
};

int cli_verify(int argc, char **argv);
void cli_verify_help(void);
int cli_collateral(int argc, char **argv);
void cli_collateral_help(void);
int cli_simulate(int argc, char **argv);
void cli_simulate_help(void);
int cli_ssh(int argc, char **argv);
void cli_ssh_help(void);
int cli_rsh(int argc, char **argv);
void cli_rsh_help(void);

int cli_guest_agent(int argc, char **argv);
void cli_guest_agent_help(void);
int cli_run(int argc, char **argv);
void cli_run_help(void);
int cli_gitlab_executor(int argc, char **argv);
void cli_gitlab_executor_help(void);
int cli_leases(int argc, char **argv);
void cli_leases_help(void);
int cli_reap(int argc, char **argv);
void cli_reap_help(void);
int cli_agent(int argc, char **argv);
void cli_agent_help(void);
int cli_register(int argc, char **argv);
void cli_register_help(void);
int cli_publish(int argc, char **argv);
void cli_publish_help(void);
int cli_warmup(int argc, char **argv);
void cli_warmup_help(void);
int cli_stop(int argc, char **argv);
void cli_stop_help(void);

#endif
