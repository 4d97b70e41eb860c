/*
 * cli_guest_agent.c - `tdx-runner guest-agent`: the local executor's per-box
 * guest agent, a foreground server speaking the dstack guest-agent API on a
 * unix socket with quotes from attest/sim (see agent/guest_agent.h). It runs
 * until SIGTERM or SIGINT, then removes its socket and exits 0.
 *
 * Trust boundary: flags come from the executor that starts the box; requests
 * on the socket are untrusted and handled by guest_agent.c. Everything it
 * signs says SIMULATED: its root is the one it writes to BOX_DIR/root.der.
 * The --test-fault switches make it lie on purpose and need TDXR_TEST_FAULTS=1.
 */
#include "agent/cli.h"

#include "agent/guest_agent.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#include <getopt.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

void cli_guest_agent_help(void)
{
	printf("usage: tdx-runner guest-agent --socket PATH --box-dir DIR [options]\n"
	       "\n"
	       "Serves the dstack guest-agent API (POST /Info, /GetQuote; legacy /prpc/Tappd.Info,\n"
	       "/prpc/Tappd.TdxQuote) on a unix socket for one local box, in the foreground.\n"
	       "Quotes come from a TDX simulator (attest/sim): each GetQuote is freshly signed over\n"
	       "the requested REPORTDATA, with an event log carrying this box's app id, compose\n"
	       "hash and instance id. The root of trust is SIMULATED, not Intel: the simulator\n"
	       "root and collateral are written to DIR/root.der and DIR/collateral.json at start\n"
	       "(verify with --root DIR/root.der --collateral DIR/collateral.json --allow-simulated).\n"
	       "The box identity is kept in DIR/guest-agent.json and survives restarts.\n"
	       "SIGTERM or SIGINT stops the server and removes the socket.\n"
	       "\n"
	       "  --socket PATH         unix socket to listen on (created mode 0660)\n"
	       "  --box-dir DIR         the box's directory (created when absent)\n"
	       "  --app-compose FILE    app-compose text of the box (default: the stored one, else\n"
	       "                        the simulator's default)\n"
	       "  --app-id HEX          app id, 40 hex digits (default: stored, else random)\n"
	       "  --instance-id HEX     instance id, 40 hex digits (default: stored, else random)\n"
	       "  --sim-seed N          derive the simulator PKI from seed N (decimal) instead of fresh\n"
	       "                        keys: agents with the same seed and --sim-time share one root,\n"
	       "                        PCK chain and collateral (a test server backing many boxes\n"
	       "                        serves that collateral from one PCCS stand-in). Anyone who\n"
	       "                        knows N can sign as this simulator - it is still SIMULATED\n"
	       "  --sim-time UNIX       validity reference of the PKI and collateral (default: now)\n"
	       "  --log-level LEVEL     debug, info (default), warn or error\n"
	       "\n"
	       "TEST-ONLY (refused unless TDXR_TEST_FAULTS=1 is in the environment; they make the\n"
	       "box lie so that tests can check the gate refuses it):\n"
	       "  --test-fault tamper-eventlog  serve an event log that does not replay to the\n"
	       "                        quoted RTMR3 (its instance-id event rewritten)\n"
	       "  --test-fault replay-quote     answer every GetQuote with one quote made at start\n"
	       "                        over other REPORTDATA\n");
}

int cli_guest_agent(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "box-dir", required_argument, NULL, 'b' },
		{ "app-compose", required_argument, NULL, 'c' },
		{ "app-id", required_argument, NULL, 'a' },
		{ "instance-id", required_argument, NULL, 'i' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "sim-seed", required_argument, NULL, 'S' },
		{ "sim-time", required_argument, NULL, 'T' },
		{ "test-fault", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct guest_agent_config cfg;
	struct guest_agent *ga = NULL;
	const char *sock = NULL, *compose_path = NULL, *level = "info", *faults_env;
	uint64_t u64 = 0;
	int64_t i64 = 0;
	enum tdxr_log_format lf;
	enum tdxr_log_level ll;
	struct sigaction sa;
	sigset_t block, old;
	uint8_t *compose = NULL;
	size_t compose_len = 0;
	struct tdxr_err e;
	int c, rc = 2;

	memset(&cfg, 0, sizeof(cfg));
	tdxr_err_clear(&e);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': sock = optarg; break;
		case 'b': cfg.box_dir = optarg; break;
		case 'c': compose_path = optarg; break;
		case 'a': cfg.app_id_hex = optarg; break;
		case 'i': cfg.instance_id_hex = optarg; break;
		case 'l': level = optarg; break;
		case 'S':
			if (tdxr_parse_u64(optarg, UINT64_MAX, &u64, &e)) {
				fprintf(stderr, "tdx-runner guest-agent: --sim-seed: %s\n", e.msg);
				return 2;
			}
			cfg.sim_deterministic = 1;
			cfg.sim_seed = u64;
			break;
		case 'T':
			if (tdxr_parse_i64(optarg, 1, INT64_C(253402300799), &i64, &e)) {
				fprintf(stderr, "tdx-runner guest-agent: --sim-time: %s\n", e.msg);
				return 2;
			}
			cfg.now = i64;
			break;
		case 'F':
			if (strcmp(optarg, "tamper-eventlog") == 0) {
				cfg.test_faults |= GUEST_AGENT_FAULT_TAMPER_EVENTLOG;
			} else if (strcmp(optarg, "replay-quote") == 0) {
				cfg.test_faults |= GUEST_AGENT_FAULT_REPLAY_QUOTE;
			} else {
				fprintf(stderr,
				        "tdx-runner guest-agent: --test-fault '%s': tamper-eventlog or "
				        "replay-quote\n",
				        optarg);
				return 2;
			}
			break;
		default:
			fprintf(stderr,
			        "tdx-runner guest-agent: unknown or incomplete option '%s' (see --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (sock == NULL || cfg.box_dir == NULL || optind < argc) {
		fprintf(stderr,
		        "tdx-runner guest-agent: needs --socket PATH and --box-dir DIR (see --help)\n");
		return 2;
	}
	faults_env = getenv("TDXR_TEST_FAULTS");
	if (cfg.test_faults && (faults_env == NULL || strcmp(faults_env, "1") != 0)) {
		fprintf(stderr, "tdx-runner guest-agent: --test-fault is for tests only: it makes the box "
		                "lie about its attestation (set TDXR_TEST_FAULTS=1 to allow it)\n");
		return 2;
	}
	if (tdxr_log_parse("text", level, &lf, &ll, &e)) {
		fprintf(stderr, "tdx-runner guest-agent: --log-level: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(lf, ll, NULL);
	if (compose_path != NULL) {
		if (tdxr_file_read(compose_path, TDXR_CAP_CONFIG, &compose, &compose_len, &e)) {
			fprintf(stderr, "tdx-runner guest-agent: --app-compose: %s\n", e.msg);
			return 2;
		}
		cfg.app_compose = (const char *)compose;
		cfg.app_compose_len = compose_len;
	}
	/* block the stop signals first: guest_agent_serve unblocks them only while waiting */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (guest_agent_socket_check(sock, &e) || guest_agent_new(&cfg, &ga, &e) ||
	    guest_agent_serve(ga, sock, &stop_requested, &e)) {
		fprintf(stderr, "tdx-runner guest-agent: %s\n", e.msg);
		goto out;
	}
	rc = 0;
out:
	guest_agent_free(ga);
	free(compose);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}
