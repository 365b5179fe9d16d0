// Builds a WAT core module into a WebAssembly component with jco's wasm-tools functions (wasm-tools compiled to
// Wasm and shipped in the npm package, so nothing is compiled or installed beyond `npm ci` in plugins/):
//
//   node plugins/build-wat.mjs <module.wat> <file.wit> <world> <out.wasm> [four more]...
//
// does for each group of four what `wasm-tools parse`, `wasm-tools component embed <file.wit> --world <world>` and
// `wasm-tools component new` do one after the other, e.g. `node plugins/build-wat.mjs plugins/hostile/noop.wat
// plugins/wit/0.1.0/gatehouse.wit gatehouse:plugin/login noop.wasm`. Several groups share one process (Node and the tool
// start once: ~0.4 s per file saved).
//
// Why the API and not `jco embed`: in jco 1.35.0 the CLI's embed cannot read its `--wit` path (jco's WASI shim gives
// the tool no filesystem, so it panics with "No such file or directory") and drops `-n/--world-name` (the tool reads
// a `world` field), so a package with several worlds cannot be embedded. Handing over the WIT's text and `world`
// works. The WIT must therefore be one file (each plugins/wit/<version> folder has one).
import { parse, componentEmbed, componentNew } from '@bytecodealliance/jco';
import { readFile, writeFile } from 'node:fs/promises';

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 4 !== 0) {
  console.error('usage: node build-wat.mjs <module.wat> <file.wit> <world> <out.wasm> [four more]...');
  process.exit(2);
}
for (let i = 0; i < args.length; i += 4) {
  const [wat, wit, world, out] = args.slice(i, i + 4);
  try {
    // embed appends the component-type section to whatever bytes it gets, so the text must be parsed first.
    const core = await parse(await readFile(wat, 'utf8'));
    const embedded = await componentEmbed({ binary: core, witSource: await readFile(wit, 'utf8'), world });
    await writeFile(out, await componentNew(embedded, []));
  } catch (err) {
    console.error(`build-wat: ${wat} (${world} from ${wit}): ${err}`);
    process.exit(1);
  }
}
