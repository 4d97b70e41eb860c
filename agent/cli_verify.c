/*
 * cli_verify.c - `tdx-runner verify`: offline verification of a quote with
 * collateral, or re-verification of an attestation bundle.
 */
#include "agent/cli.h"

#include <stdio.h>

void cli_verify_help(void)
{
	printf("usage: tdx-runner verify --quote FILE --collateral FILE [options]\n"
	       "       tdx-runner verify BUNDLE.json [options]\n");
}

int cli_verify(int argc, char **argv)
{
	fprintf(stderr, "tdx-runner verify: not implemented yet\n");
	return 2;
}
