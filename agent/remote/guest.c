/*
 * guest.c - the dstack guest agent, asked from inside the box over the SSH
 * session: Info and GetQuote(report_data). The box has python3 but maybe not
 * curl, so a short python3 program does HTTP/1.1 over the guest agent's unix
 * socket (DSTACK_SIMULATOR_ENDPOINT when set in the box, else
 * /var/run/dstack.sock, else the legacy /var/run/tappd.sock with its /prpc/Tappd.*
 * paths) with a socket timeout and a bounded read.
 *
 * Trust boundary: the response is untrusted bytes from the box. It is capped at
 * TDXR_CAP_EVENTLOG here, time-bounded, and handed to the caller (attest/)
 * exactly as received: no parsing, no re-encoding.
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include "common/buf.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* argv: METHOD(info|quote) REPORT_DATA_HEX CAP TIMEOUT_S. No single quotes inside:
 * the program is passed to python3 -c in single quotes. Exit 3 = HTTP status not
 * 200, 4 = over the cap, 5 = no guest-agent socket. */
static const char guest_prog[] =
    "import http.client,os,socket,sys\n"
    "m,rd,cap,t=sys.argv[1],sys.argv[2],int(sys.argv[3]),float(sys.argv[4])\n"
    "class U(http.client.HTTPConnection):\n"
    "  def __init__(s,p):\n"
    "    super().__init__(\"localhost\",timeout=t);s.p=p\n"
    "  def connect(s):\n"
    "    s.sock=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM);s.sock.settimeout(t);s.sock.connect(s.p)\n"
    "c=[]\n"
    "e=os.environ.get(\"DSTACK_SIMULATOR_ENDPOINT\",\"\")\n"
    "if e:\n"
    "  c.append((e,\"tappd\" in e))\n"
    "c+=[(\"/var/run/dstack.sock\",False),(\"/var/run/tappd.sock\",True)]\n"
    "for p,legacy in c:\n"
    "  if p.startswith(\"http://\"):\n"
    "    h=p[7:].split(\"/\")[0];conn=http.client.HTTPConnection(h,timeout=t)\n"
    "  elif os.path.exists(p):\n"
    "    conn=U(p)\n"
    "  else:\n"
    "    continue\n"
    "  if m==\"info\":\n"
    "    path,body=(\"/prpc/Tappd.Info\",\"{}\") if legacy else (\"/Info\",\"{}\")\n"
    "  else:\n"
    "    path=\"/prpc/Tappd.TdxQuote\" if legacy else \"/GetQuote\"\n"
    "    body=(\"{\\\"report_data\\\":\\\"%s\\\"%s}\")%(rd,\",\\\"hash_algorithm\\\":\\\"raw\\\"\" if legacy "
    "else \"\")\n"
    "  conn.request(\"POST\",path,body=body.encode(),headers={\"Content-Type\":\"application/json\"})\n"
    "  r=conn.getresponse()\n"
    "  b=r.read(cap+1)\n"
    "  if r.status!=200:\n"
    "    sys.stderr.write(\"guest agent %s %s: HTTP %d\\n\"%(p,path,r.status));sys.exit(3)\n"
    "  if len(b)>cap:\n"
    "    sys.exit(4)\n"
    "  sys.stdout.buffer.write(b);sys.stdout.flush();sys.exit(0)\n"
    "sys.stderr.write(\"no guest-agent socket (DSTACK_SIMULATOR_ENDPOINT, /var/run/dstack.sock, "
    "/var/run/tappd.sock)\\n\")\n"
    "sys.exit(5)\n";

struct guest_sink {
	struct tdxr_buf out;
	struct tdxr_buf errtxt;
	int too_big;
};

static int guest_collect(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct guest_sink *g = ctx;

	if (which == REMOTE_OUT_STDOUT) {
		if (tdxr_buf_append(&g->out, p, n, NULL) != 0) {
			g->too_big = 1;
			return 1;
		}
		return 0;
	}
	if (g->errtxt.len + n > g->errtxt.max)
		n = g->errtxt.max - g->errtxt.len; /* keep the first bytes of stderr only */
	if (n > 0)
		(void)tdxr_buf_append(&g->errtxt, p, n, NULL);
	return 0;
}

static int guest_call(struct remote_ssh *ssh, const char *method, const char *rd_hex, int timeout_ms,
                      uint8_t **out, size_t *len, struct tdxr_err *err)
{
	struct guest_sink g;
	struct tdxr_buf cmd;
	struct remote_exec_opts o;
	struct remote_exec_result res;
	int rc, tmo = timeout_ms > 0 ? timeout_ms : 30000;
	size_t i;

	*out = NULL;
	*len = 0;
	tdxr_buf_init(&g.out, TDXR_CAP_EVENTLOG);
	tdxr_buf_init(&g.errtxt, 512);
	g.too_big = 0;
	tdxr_buf_init(&cmd, 64u * 1024u);
	rc = tdxr_buf_append(&cmd, "python3 -c '", 12, err);
	if (rc == 0)
		rc = tdxr_buf_append(&cmd, guest_prog, sizeof(guest_prog) - 1, err);
	if (rc == 0)
		rc = tdxr_buf_appendf(&cmd, err, "' %s %s %u %d", method, rd_hex, TDXR_CAP_EVENTLOG,
		                      tmo / 1000 > 0 ? tmo / 1000 : 1);
	if (rc != 0)
		goto out;
	memset(&o, 0, sizeof(o));
	o.command = (const char *)cmd.data;
	o.stdin_fd = -1;
	o.output = guest_collect;
	o.output_ctx = &g;
	o.timeout_ms = tmo + 2000;
	rc = remote_exec_run(ssh, &o, &res, err);
	if (g.too_big) {
		rc = tdxr_err_set(err, TDXR_ETOOBIG, "guest agent %s: response over %u bytes", method,
		                  TDXR_CAP_EVENTLOG);
		goto out;
	}
	if (rc != 0)
		goto out;
	for (i = 0; i < g.errtxt.len; i++)
		if (g.errtxt.data[i] < 0x20 || g.errtxt.data[i] > 0x7e)
			g.errtxt.data[i] = ' '; /* untrusted text into one log line */
	if (!res.exited || res.exit_status != 0) {
		rc = tdxr_err_set(
		    err, res.exited && res.exit_status == 4 ? TDXR_ETOOBIG : TDXR_EIO,
		    "guest agent %s: %s%s (exit %d%s%s)", method,
		    res.exited && res.exit_status == 127 ? "python3 not found in the box; " : "",
		    g.errtxt.len ? (const char *)g.errtxt.data : "failed", res.exited ? res.exit_status : -1,
		    res.exit_signal[0] ? ", signal " : "", res.exit_signal);
		goto out;
	}
	*out = tdxr_buf_steal(&g.out, len);
	rc = 0;
out:
	tdxr_buf_dispose(&cmd);
	tdxr_buf_dispose(&g.out);
	tdxr_buf_dispose(&g.errtxt);
	return rc;
}

int remote_guest_info(struct remote_ssh *ssh, int timeout_ms, uint8_t **out, size_t *len,
                      struct tdxr_err *err)
{
	return guest_call(ssh, "info", "-", timeout_ms, out, len, err);
}

int remote_guest_quote(struct remote_ssh *ssh, const uint8_t report_data[64], int timeout_ms, uint8_t **out,
                       size_t *len, struct tdxr_err *err)
{
	char hex[129];

	tdxr_hex_encode(report_data, 64, hex);
	return guest_call(ssh, "quote", hex, timeout_ms, out, len, err);
}
