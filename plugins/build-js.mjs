// Builds a JavaScript plugin into a WebAssembly component with componentize-js.
//
//   node plugins/build-js.mjs <source.js> <world>[@<version>] <out.wasm> [config.json]
//
// `world` is login, email or pricing; `version` the contract (plugins/wit/<version>/gatehouse.wit), 0.2.0 when
// left out. Every WASI feature is disabled, so the component imports nothing but `gatehouse:plugin/host` and the
// world's types — Gatehouse refuses any other import. A config.json given here is embedded as `globalThis.CONFIG`:
// contract 0.1.0 has no `config()`, so its plugins read their settings at build time (0.2.0 plugins call
// `config()` and get the settings saved with the plugin).
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [source, worldArg, out, configPath] = process.argv.slice(2);
if (!source || !worldArg || !out) {
  console.error('usage: node build-js.mjs <source.js> <world>[@<version>] <out.wasm> [config.json]');
  process.exit(2);
}
const [world, version = '0.2.0'] = worldArg.split('@');
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
  witPath: resolve(here, 'wit', version),
  worldName: world,
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`${out}: ${component.length} bytes`);
