#!/usr/bin/env node
// sim_crosscheck.js - verifies attest/sim output with an independent DCAP
// verifier, Phala's @phala/dcap-qvl (pure JS), as a differential oracle.
//
// Usage: node sim_crosscheck.js DIR
// DIR holds one sub-directory per scenario, written by `test_sim --dump DIR`:
// quote.bin, collateral.json (dcap-qvl QuoteCollateralV3 layout), root.der (the
// simulator root, passed as the trusted root), eventlog.json and meta.json
// ({now, expect: {status, advisory_ids} | {error: substring}}).
// For accepted scenarios the event log is also replayed here (SHA-384 extend
// from 48 zero bytes, runtime digests recomputed) and compared with the RTMRs
// dcap-qvl parsed out of the quote. Prints one line per scenario and a closing
// "N passed, N failed"; exits non-zero on any failure.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { QuoteVerifier } = require('@phala/dcap-qvl');

function errorText(e) {
    const parts = [];
    for (let c = e; c; c = c.cause)
        parts.push(String(c.message || c));
    return parts.join(' <- ');
}

function replay(events) {
    const mr = [0, 1, 2, 3].map(() => Buffer.alloc(48));
    for (const e of events) {
        const digest = Buffer.from(e.digest, 'hex');
        if (e.event_type === 0x08000001) {
            const t = Buffer.alloc(4);
            t.writeUInt32LE(e.event_type);
            const want = crypto.createHash('sha384')
                .update(Buffer.concat([t, Buffer.from(':' + e.event + ':'), Buffer.from(e.event_payload, 'hex')]))
                .digest();
            if (!want.equals(digest))
                throw new Error(`runtime event ${e.event}: digest does not match its payload`);
        }
        mr[e.imr] = crypto.createHash('sha384').update(Buffer.concat([mr[e.imr], digest])).digest();
    }
    return mr;
}

function checkScenario(dir) {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
    const quote = fs.readFileSync(path.join(dir, 'quote.bin'));
    const collateral = JSON.parse(fs.readFileSync(path.join(dir, 'collateral.json'), 'utf8'));
    const root = fs.readFileSync(path.join(dir, 'root.der'));
    const exp = meta.expect;
    let res;

    try {
        res = QuoteVerifier.newWithRootCa(root).verify(quote, collateral, meta.now);
    } catch (e) {
        const msg = errorText(e);
        if (exp.error && msg.includes(exp.error))
            return `rejected as expected: ${msg}`;
        throw new Error(exp.error ? `rejected with "${msg}", expected "${exp.error}"` : `rejected: ${msg}`);
    }
    if (exp.error)
        throw new Error(`accepted (${res.status}), expected rejection "${exp.error}"`);
    const adv = [...res.advisory_ids].sort();
    const want = [...exp.advisory_ids].sort();
    if (res.status !== exp.status || JSON.stringify(adv) !== JSON.stringify(want))
        throw new Error(`got ${res.status} [${adv}], expected ${exp.status} [${want}]`);

    const td = res.report.asTd10();
    if (!td)
        throw new Error('verified report is not a TD report');
    const events = JSON.parse(fs.readFileSync(path.join(dir, 'eventlog.json'), 'utf8'));
    const mr = replay(events);
    const quoteMr = [td.rtMr0, td.rtMr1, td.rtMr2, td.rtMr3];
    for (let i = 0; i < 4; i++) {
        if (!mr[i].equals(Buffer.from(quoteMr[i])))
            throw new Error(`RTMR${i} of the quote differs from the event log replay`);
    }
    return `${res.status} [${adv}], RTMR0-3 match the event log (${events.length} events)`;
}

function main() {
    const base = process.argv[2];
    if (!base) {
        console.error('usage: node sim_crosscheck.js DIR');
        process.exit(2);
    }
    const names = fs.readdirSync(base).filter((n) => fs.existsSync(path.join(base, n, 'meta.json'))).sort();
    let passed = 0;
    let failed = 0;
    for (const n of names) {
        try {
            const what = checkScenario(path.join(base, n));
            console.log(`ok - ${n}: ${what}`);
            passed++;
        } catch (e) {
            console.log(`not ok - ${n}: ${errorText(e)}`);
            failed++;
        }
    }
    if (names.length === 0) {
        console.log(`not ok - no scenarios in ${base}`);
        failed++;
    }
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

main();
