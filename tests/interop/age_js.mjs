// A tiny age CLI over typage (the age-encryption npm package), for interop tests.
//
//   node age_js.mjs keygen [--pq]                 -> identity line, then recipient line
//   node age_js.mjs recipient IDENTITY_FILE       -> the recipient of each identity
//   node age_js.mjs encrypt [-a] [-r R]... [-R FILE]... [-p] IN OUT
//   node age_js.mjs decrypt [-i FILE]... [-p] IN OUT   (armor detected)
//
// -p reads the passphrase from AGE_JS_PASSPHRASE (never argv). Errors print one
// line to stderr and exit 1.
import { readFileSync, writeFileSync } from "node:fs";
import {
  Decrypter,
  Encrypter,
  armor,
  generateHybridIdentity,
  generateX25519Identity,
  identityToRecipient,
} from "age-encryption";

function keyLines(path) {
  return readFileSync(path, "utf8")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

function passphrase() {
  const p = process.env.AGE_JS_PASSPHRASE;
  if (!p) throw new Error("-p needs AGE_JS_PASSPHRASE");
  return p;
}

function parse(args) {
  const opts = { recipients: [], identities: [], armor: false, passphrase: false, rest: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-r") opts.recipients.push(args[++i]);
    else if (a === "-R") opts.recipients.push(...keyLines(args[++i]));
    else if (a === "-i") opts.identities.push(...keyLines(args[++i]));
    else if (a === "-a") opts.armor = true;
    else if (a === "-p") opts.passphrase = true;
    else if (a === "--pq") opts.pq = true;
    else opts.rest.push(a);
  }
  return opts;
}

async function main() {
  const [cmd, ...args] = process.argv.slice(2);
  const o = parse(args);
  if (cmd === "keygen") {
    const id = o.pq ? await generateHybridIdentity() : await generateX25519Identity();
    process.stdout.write(`${id}\n${await identityToRecipient(id)}\n`);
  } else if (cmd === "recipient") {
    for (const id of keyLines(o.rest[0])) {
      process.stdout.write(`${await identityToRecipient(id)}\n`);
    }
  } else if (cmd === "encrypt") {
    const [inPath, outPath] = o.rest;
    const e = new Encrypter();
    if (o.passphrase) {
      e.setPassphrase(passphrase());
      if (process.env.AGE_JS_WORK_FACTOR) e.setScryptWorkFactor(Number(process.env.AGE_JS_WORK_FACTOR));
    }
    for (const r of o.recipients) e.addRecipient(r);
    const ct = await e.encrypt(new Uint8Array(readFileSync(inPath)));
    writeFileSync(outPath, o.armor ? armor.encode(ct) : ct);
  } else if (cmd === "decrypt") {
    const [inPath, outPath] = o.rest;
    const d = new Decrypter();
    if (o.passphrase) d.addPassphrase(passphrase());
    for (const id of o.identities) d.addIdentity(id);
    let ct = new Uint8Array(readFileSync(inPath));
    const head = Buffer.from(ct.subarray(0, 64)).toString("latin1").trimStart();
    if (head.startsWith("-----BEGIN")) ct = armor.decode(Buffer.from(ct).toString("latin1"));
    writeFileSync(outPath, await d.decrypt(ct));
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
}

main().catch((err) => {
  process.stderr.write(`age_js: error: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
