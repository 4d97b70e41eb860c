#!/usr/bin/env node
/*
 * bench_dcap_qvl.js - the baseline for bench/bench_verify.c: times
 * @phala/dcap-qvl 0.3.9 (pure JS, the package tests/oracle pins and installs)
 * verifying one quote with its collateral, the same loop as ours.
 *
 *   node bench_dcap_qvl.js [-n N] [--batches B] [--warmup W] QUOTE COLLATERAL NOW
 *
 * The quote is decoded and the collateral JSON parsed once ("cached
 * collateral"); each timed iteration is one verify(quote, collateral, now).
 * Prints one JSON line like bench_verify: ns_per_op (median of B equal
 * batches), min, mean, maxrss_kib (VmHWM). Exit 0 when
 * measured, 1 when the quote did not verify (nothing timed), 2 on usage/IO.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { loadQvl, quoteDecode } = require(path.join(__dirname, '..', 'tests', 'oracle',
							'dcap_qvl_verify.js'));

/*
 * Peak RSS in KiB: VmHWM of this address space. process.resourceUsage().maxRSS
 * is ru_maxrss, which Linux carries across exec from the parent process.
 */
function maxRssKib() {
	try {
		const m = /VmHWM:\s*(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
		if (m)
			return Number(m[1]);
	} catch (e) {
		/* not Linux: fall through */
	}
	return process.resourceUsage().maxRSS;
}

function parseArgs(argv) {
	const o = { n: 1000, batches: 5, warmup: null, pos: [] };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const num = () => {
			const v = argv[++i];
			if (!/^[0-9]+$/.test(v || ''))
				throw new Error(`${a} needs a non-negative integer`);
			return Number(v);
		};
		if (a === '-n')
			o.n = num();
		else if (a === '--batches')
			o.batches = num();
		else if (a === '--warmup')
			o.warmup = num();
		else if (a.startsWith('-') && a.length > 1)
			throw new Error(`unknown option ${a}`);
		else
			o.pos.push(a);
	}
	if (o.pos.length !== 3 || !/^[0-9]+$/.test(o.pos[2]))
		throw new Error('QUOTE COLLATERAL NOW are required');
	if (o.batches < 1 || o.n < o.batches)
		throw new Error('need -n >= --batches >= 1');
	if (o.warmup === null)
		o.warmup = Math.max(1, Math.floor(o.n / 10));
	return o;
}

function main() {
	let o;
	let qvl;
	let quote;
	let collateral;
	try {
		o = parseArgs(process.argv.slice(2));
		qvl = loadQvl();
		quote = new Uint8Array(quoteDecode(fs.readFileSync(o.pos[0])));
		collateral = JSON.parse(fs.readFileSync(o.pos[1], 'utf8'));
	} catch (e) {
		process.stderr.write(`bench_dcap_qvl: ${e.message}\n`);
		return 2;
	}
	const now = Number(o.pos[2]);
	const res = { tool: '@phala/dcap-qvl@0.3.9', mode: 'verify', quote: o.pos[0],
		      collateral: o.pos[1], now, node: process.version };

	let first;
	try {
		first = qvl.verify(quote, collateral, now);
	} catch (e) {
		res.ok = false;
		res.error = e.message;
		res.maxrss_kib = maxRssKib();
		process.stdout.write(JSON.stringify(res) + '\n');
		return 1;
	}
	res.ok = true;
	res.status = first.status;
	res.advisory_ids = first.advisory_ids;

	for (let i = 0; i < o.warmup; i++)
		qvl.verify(quote, collateral, now);
	const per = Math.floor(o.n / o.batches);
	const batches = [];
	let total = 0n;
	for (let k = 0; k < o.batches; k++) {
		const t0 = process.hrtime.bigint();
		for (let i = 0; i < per; i++)
			qvl.verify(quote, collateral, now);
		const dt = process.hrtime.bigint() - t0;
		batches.push(Number(dt));
		total += dt;
	}
	batches.sort((a, b) => a - b);
	res.n = per * o.batches;
	res.batches = o.batches;
	res.ns_per_op = batches[Math.floor(o.batches / 2)] / per;
	res.ns_per_op_min = batches[0] / per;
	res.ns_per_op_mean = Number(total) / (per * o.batches);
	res.maxrss_kib = maxRssKib();
	process.stdout.write(JSON.stringify(res) + '\n');
	return 0;
}

process.exitCode = main();
