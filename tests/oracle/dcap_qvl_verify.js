#!/usr/bin/env node
/*
 * dcap_qvl_verify.js - the differential oracle: verifies one DCAP quote with
 * @phala/dcap-qvl 0.3.9 (pure JS, pinned in package.json) and prints one JSON
 * line that tests/integration/test_oracle_diff.sh compares with our verifier.
 *
 *   node dcap_qvl_verify.js QUOTE COLLATERAL NOW
 *
 * QUOTE is binary or hex text (optional 0x, whitespace anywhere); COLLATERAL is
 * dcap-qvl QuoteCollateralV3 JSON; NOW is UNIX seconds. The result is the
 * "rust_0.5_equivalent" of shared/testdata/tdx/manifest.json: the JS 0.3.9
 * result merged with the TDX module identity status, as dcap-qvl's Rust
 * verifier does (identity "TDX_%02X" of TEE_TCB_SVN[1], first tcbLevel with
 * isvsvn <= TEE_TCB_SVN[0], worse status wins, advisory ids united). The raw JS
 * result is kept under "js" and the module check under "tdx_module".
 *
 * Output: {"ok","status","advisory_ids","error","js":{...},"tdx_module":{...}}.
 * Exit 0 accepted, 1 rejected, 2 usage or I/O error (still one JSON line).
 * Inputs are untrusted test vectors; nothing here touches the network.
 */
'use strict';

const fs = require('fs');

/* Resolve the pinned package next to this file (tests/oracle/node_modules). */
function loadQvl() {
	const opts = { paths: [__dirname] };
	const pkg = require(require.resolve('@phala/dcap-qvl/package.json', opts));
	if (pkg.version !== '0.3.9')
		throw new Error(`@phala/dcap-qvl ${pkg.version} installed, 0.3.9 required`);
	return require(require.resolve('@phala/dcap-qvl', opts));
}

/* Same order as dcap-qvl's tcbStatusSeverity; unknown strings are worst. */
const SEVERITY = ['UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded',
		  'ConfigurationAndSWHardeningNeeded', 'OutOfDate',
		  'OutOfDateConfigurationNeeded', 'Revoked'];

function severity(s) {
	const i = SEVERITY.indexOf(s);
	return i < 0 ? 100 : i;
}

function mergeStatus(a, b) {
	const status = severity(b.status) > severity(a.status) ? b.status : a.status;
	const ids = [...a.advisory_ids];
	for (const id of b.advisory_ids)
		if (!ids.includes(id))
			ids.push(id);
	return { status, advisory_ids: ids };
}

/* Binary, or hex text with optional 0x and whitespace. */
function quoteDecode(buf) {
	const text = buf.toString('latin1').replace(/\s+/g, '');
	const body = /^0[xX]/.test(text) ? text.slice(2) : text;
	if (body.length > 0 && body.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(body))
		return Buffer.from(body, 'hex');
	return buf;
}

function hexOf(u8) {
	return Buffer.from(u8).toString('hex');
}

/*
 * TDX module identity as dcap-qvl Rust match_tdx_module_identity does it:
 * module version 0 (or no identities) checks MRSIGNERSEAM / SEAMATTRIBUTES
 * against tdxModule only and adds no status; otherwise the TDX_<ver> identity
 * must exist and one of its levels must match.
 */
function tdxModuleCheck(qvl, quoteBytes, collateral) {
	const out = { id: null, isvsvn: null, status: null, advisory_ids: null, error: null };
	let quote;
	let tcb;
	try {
		quote = qvl.Quote.parse(quoteBytes);
		tcb = JSON.parse(collateral.tcb_info);
	} catch (e) {
		out.error = `parse: ${e.message}`;
		return out;
	}
	const td = quote.report.asTd10();
	if (!td || tcb.id !== 'TDX' || !(tcb.version >= 3))
		return out;
	const isvsvn = td.teeTcbSvn[0];
	const version = td.teeTcbSvn[1];
	out.isvsvn = isvsvn;
	if (!tcb.tdxModule) {
		out.error = 'TDX TCB Info is missing tdxModule field';
		return out;
	}
	let expect = tcb.tdxModule;
	let levels = null;
	const identities = Array.isArray(tcb.tdxModuleIdentities) ? tcb.tdxModuleIdentities : [];
	if (version > 0 && identities.length > 0) {
		const want = 'TDX_' + version.toString(16).toUpperCase().padStart(2, '0');
		out.id = want;
		const ident = identities.find(x => typeof x.id === 'string' &&
					      x.id.toUpperCase() === want);
		if (!ident) {
			out.error = `No TDX module identity with id ${want} found in TCB Info`;
			return out;
		}
		expect = ident;
		levels = Array.isArray(ident.tcbLevels) ? ident.tcbLevels : [];
	}
	if (hexOf(td.mrSignerSeam) !== String(expect.mrsigner).toLowerCase()) {
		out.error = 'TDX module MRSIGNER mismatch';
		return out;
	}
	const attr = Buffer.from(String(expect.attributes), 'hex');
	const mask = Buffer.from(String(expect.attributesMask), 'hex');
	if (attr.length !== 8 || mask.length !== 8) {
		out.error = 'TDX module attributes/attributesMask are not 8 bytes';
		return out;
	}
	for (let i = 0; i < 8; i++) {
		const got = td.seamAttributes[i];
		if ((got & mask[i]) !== (attr[i] & mask[i]) || (got & ~mask[i] & 0xff) !== 0) {
			out.error = `TDX module SEAMATTRIBUTES mismatch at byte ${i}`;
			return out;
		}
	}
	if (levels === null)
		return out;
	const level = levels.find(l => l && l.tcb && isvsvn >= l.tcb.isvsvn);
	if (!level) {
		out.error = `TDX module ISVSVN ${isvsvn} is below minimum required from TDX module TCB levels`;
		return out;
	}
	out.status = level.tcbStatus;
	out.advisory_ids = Array.isArray(level.advisoryIDs) ? [...level.advisoryIDs] : [];
	return out;
}

function main(argv) {
	const res = { ok: false, status: null, advisory_ids: null, error: null,
		      js: null, tdx_module: null };
	if (argv.length !== 3 || !/^[0-9]+$/.test(argv[2])) {
		res.error = 'usage: node dcap_qvl_verify.js QUOTE COLLATERAL NOW';
		return [res, 2];
	}
	let qvl;
	let quote;
	let collateral;
	try {
		qvl = loadQvl();
		quote = quoteDecode(fs.readFileSync(argv[0]));
		collateral = JSON.parse(fs.readFileSync(argv[1], 'utf8'));
	} catch (e) {
		res.error = `input: ${e.message}`;
		return [res, 2];
	}
	const now = Number(argv[2]);

	const js = { status: null, advisory_ids: null, error: null };
	try {
		const r = qvl.verify(new Uint8Array(quote), collateral, now);
		js.status = r.status;
		js.advisory_ids = [...r.advisory_ids];
	} catch (e) {
		js.error = e.message;
	}
	res.js = js;
	res.tdx_module = tdxModuleCheck(qvl, new Uint8Array(quote), collateral);

	if (js.error !== null) {
		res.error = js.error;
		return [res, 1];
	}
	let merged = { status: js.status, advisory_ids: js.advisory_ids };
	const mod = res.tdx_module;
	if (mod.error !== null) {
		res.error = `TDX module identity check: ${mod.error}`;
		return [res, 1];
	}
	if (mod.status !== null)
		merged = mergeStatus(merged, mod);
	if (severity(merged.status) >= severity('Revoked')) {
		res.error = `TCB status is invalid: ${merged.status}`;
		return [res, 1];
	}
	res.ok = true;
	res.status = merged.status;
	res.advisory_ids = merged.advisory_ids;
	return [res, 0];
}

if (require.main === module) {
	const [result, code] = main(process.argv.slice(2));
	process.stdout.write(JSON.stringify(result) + '\n');
	process.exitCode = code;
}

/* bench/bench_dcap_qvl.js loads the same package the same way. */
module.exports = { loadQvl, quoteDecode };
