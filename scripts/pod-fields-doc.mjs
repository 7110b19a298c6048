#!/usr/bin/env node
// Rewrites the field tables of docs/pod-fields.md from runtime-api/pod-fields.ts
// (after a build: npx tsc -p tsconfig.json). test/pod-fields.test.ts fails while
// the doc and the code disagree.
import { readFileSync, writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const { renderFieldTables, DOC_BEGIN, DOC_END } = await import(new URL('dist/runtime-api/pod-fields.js', `file://${root}`).href);
const file = `${root}docs/pod-fields.md`;
const doc = readFileSync(file, 'utf8');
const start = doc.indexOf(DOC_BEGIN);
const end = doc.indexOf(DOC_END);
if (start < 0 || end < start) throw new Error(`${file}: the markers ${DOC_BEGIN} … ${DOC_END} are missing`);
writeFileSync(file, `${doc.slice(0, start + DOC_BEGIN.length)}\n${renderFieldTables()}${doc.slice(end)}`);
console.log(`${file}: tables rewritten`);
