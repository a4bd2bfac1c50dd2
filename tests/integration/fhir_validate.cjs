// fhir_validate.cjs - validate FHIR R4 Bundles (JSON, one document per file
// argument, or a JSON array of them on stdin) with npm's `fhir` package
// (FHIR.js: structure, cardinality, types, required value sets against the
// R4 definitions it ships), plus the R4 regular expressions of the primitive
// types FHIR.js does not check (date, dateTime, instant, time, id, uri-ish
// references).  Prints one JSON line {"file", "errors": [...]} per document;
// exit 0 when there is no error at all, 1 otherwise.
'use strict';
const fs = require('fs');
const { Fhir } = require('fhir');

const fhir = new Fhir();
const RE = {
  date: /^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$/,
  dateTime: /^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$/,
  instant: /^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$/,
  time: /^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$/,
  id: /^[A-Za-z0-9\-\.]{1,64}$/,
};
// element name -> primitive type, for the elements the converter writes
const TYPED = {
  birthDate: 'date', expirationDate: 'date', start: 'dateTime', end: 'dateTime',
  effectiveDateTime: 'dateTime', onsetDateTime: 'dateTime', recordedDate: 'dateTime',
  occurrenceDateTime: 'dateTime', authoredOn: 'dateTime', deceasedDateTime: 'dateTime',
  valueDateTime: 'dateTime', collectedDateTime: 'dateTime', receivedTime: 'dateTime',
  issued: 'instant', timestamp: 'instant', date: 'instant', valueTime: 'time', id: 'id',
};

function walk(v, path, errs) {
  if (Array.isArray(v)) { v.forEach((x, i) => walk(x, `${path}[${i}]`, errs)); return; }
  if (v === null || typeof v !== 'object') return;
  for (const [k, x] of Object.entries(v)) {
    const p = `${path}.${k}`;
    if (typeof x === 'string' && TYPED[k] && !RE[TYPED[k]].test(x))
      errs.push({ location: p, message: `not a FHIR ${TYPED[k]}: ${JSON.stringify(x)}` });
    if (typeof x === 'string' && x !== x.trim())
      errs.push({ location: p, message: 'leading or trailing whitespace' });
    if (x === '' ) errs.push({ location: p, message: 'empty string' });
    if (Array.isArray(x) && x.length === 0) errs.push({ location: p, message: 'empty array' });
    if (x && typeof x === 'object' && !Array.isArray(x) && Object.keys(x).length === 0)
      errs.push({ location: p, message: 'empty object' });
    walk(x, p, errs);
  }
}

function references(bundle, errs) {
  const urls = new Set((bundle.entry || []).map((e) => e.fullUrl));
  const seen = new Set();
  (bundle.entry || []).forEach((e, i) => {
    if (seen.has(e.fullUrl)) errs.push({ location: `Bundle.entry[${i}]`, message: 'fullUrl twice' });
    seen.add(e.fullUrl);
    if (!/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(e.fullUrl))
      errs.push({ location: `Bundle.entry[${i}].fullUrl`, message: 'not a urn:uuid' });
  });
  const check = (v, path) => {
    if (Array.isArray(v)) return v.forEach((x, i) => check(x, `${path}[${i}]`));
    if (!v || typeof v !== 'object') return;
    if (typeof v.reference === 'string' && v.reference.startsWith('urn:uuid:') && !urls.has(v.reference))
      errs.push({ location: path, message: `reference to no entry: ${v.reference}` });
    for (const [k, x] of Object.entries(v)) check(x, `${path}.${k}`);
  };
  check(bundle, 'Bundle');
}

function validate(doc) {
  const r = fhir.validate(doc, { errorOnUnexpected: true });
  const errs = (r.messages || []).filter((m) => m.severity === 'error')
    .map((m) => ({ location: `${m.resourceId || ''} ${m.location}`, message: m.message }));
  walk(doc, doc.resourceType || '?', errs);
  if (doc.resourceType === 'Bundle') references(doc, errs);
  return errs;
}

let docs = [];
if (process.argv.length > 2) {
  for (const f of process.argv.slice(2)) {
    const text = fs.readFileSync(f, 'utf8');
    // one document, or several (one a line or pretty-printed one after another)
    const parts = text.trim().startsWith('[') ? JSON.parse(text) : splitDocs(text);
    parts.forEach((d, i) => docs.push({ file: parts.length > 1 ? `${f}#${i + 1}` : f, doc: d }));
  }
} else {
  const all = JSON.parse(fs.readFileSync(0, 'utf8'));
  docs = all.map((d, i) => ({ file: `stdin#${i + 1}`, doc: d }));
}

function splitDocs(text) {
  const out = [];
  let depth = 0, start = -1, inStr = false, esc = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inStr) { if (esc) esc = false; else if (c === '\\') esc = true; else if (c === '"') inStr = false; continue; }
    if (c === '"') inStr = true;
    else if (c === '{') { if (depth++ === 0) start = i; }
    else if (c === '}') { if (--depth === 0) out.push(JSON.parse(text.slice(start, i + 1))); }
  }
  return out;
}

let total = 0;
for (const { file, doc } of docs) {
  const errors = validate(doc);
  total += errors.length;
  console.log(JSON.stringify({ file, resources: (doc.entry || []).length, errors }));
}
process.exit(total ? 1 : 0);
