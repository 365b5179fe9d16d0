// Builds a JavaScript plugin into a WebAssembly component with componentize-js.
//
//   node plugins/build-js.mjs <source.js> <world> <out.wasm> [config.json]
//
// `world` is login, email or pricing (plugins/wit/gatehouse.wit). Every WASI feature is disabled, so the component
// imports nothing but `gatehouse:plugin/host` — Gatehouse refuses any other import. A config.json next to the source
// is embedded as `globalThis.CONFIG` (plugins read their settings at build time in contract 0.1.0).
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [source, world, out, configPath] = process.argv.slice(2);
if (!source || !world || !out) {
  console.error('usage: node build-js.mjs <source.js> <world> <out.wasm> [config.json]');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
let code = await readFile(source, 'utf8');
if (configPath) {
  const config = JSON.parse(await readFile(configPath, 'utf8'));
  code = `globalThis.CONFIG = ${JSON.stringify(config)};\n${code}`;
}
const dir = await mkdtemp(join(tmpdir(), 'gatehouse-plugin-'));
const entry = join(dir, 'plugin.js');
await writeFile(entry, code);
const { component } = await componentize({
  sourcePath: entry,
  witPath: resolve(here, 'wit'),
  worldName: world,
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`${out}: ${component.length} bytes`);
