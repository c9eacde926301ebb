// The HTML report in a real browser: headless Chromium loads report.html from a file:// URL with the
// network disabled. Every plot must be drawn (rendered SVG data marks counted against report.json), the
// numbers on the page must match report.json, there must be no console errors and no request may leave
// the file. A full-page screenshot is saved to target/test-artifacts/ for people to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, existsSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import Ajv2020 from 'ajv/dist/2020.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const bin = process.env.REPSCOPE_BIN ?? join(root, 'target', 'release', 'repscope');
const chromePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const artifacts = join(root, 'target', 'test-artifacts');
const fixtures = join(root, 'tests', 'fixtures', 'oracles', 'inputs');

const schema = JSON.parse(readFileSync(join(root, 'schema', 'report-2.json'), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
function readReport(dir) {
  const doc = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
  assert.ok(validate(doc), `report.json does not match schema/report-2.json: ${JSON.stringify(validate.errors, null, 1)}`);
  return doc;
}

let browser;
before(async () => {
  assert.ok(existsSync(bin), `build repscope first (${bin})`);
  assert.ok(existsSync(chromePath), `Chromium not found at ${chromePath}`);
  mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({
    executablePath: chromePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});
after(async () => { await browser?.close(); });

function runReport(args) {
  const out = mkdtempSync(join(tmpdir(), 'repscope-report-'));
  const r = spawnSync(bin, [...args, '-o', out, '--force', '--quiet'], { encoding: 'utf8' });
  return { out, code: r.status, stderr: r.stderr, stdout: r.stdout };
}

/** Opens a page offline, recording console errors and every request that would leave the file. */
async function open(htmlPath) {
  const context = await browser.newContext({ offline: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  const external = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    external.push(url);
    return route.abort();
  });
  await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load' });
  return { context, page, errors, external };
}

/** Loads a page offline and returns what was drawn. */
async function load(htmlPath, shot) {
  const { context, page, errors, external } = await open(htmlPath);
  const drawn = await page.evaluate(() => {
    const plots = {};
    for (const svg of document.querySelectorAll('svg.plot')) {
      const box = svg.getBoundingClientRect();
      const marks = [...svg.querySelectorAll('.mark')].filter((m) => {
        const b = m.getBBox();
        return b.width > 0 && b.height > 0;
      });
      const lines = [...svg.querySelectorAll('.series-line')].filter((l) => l.getTotalLength() > 0);
      plots[svg.id] = { width: box.width, height: box.height, marks: marks.length, lines: lines.length };
    }
    const cards = [...document.querySelectorAll('section.input')].map((s) => [...s.querySelectorAll('.card .v')].map((c) => c.textContent));
    const tables = [...document.querySelectorAll('section.input')].map((s) => {
      const t = s.querySelector('table');
      return t ? [...t.querySelectorAll('tr')].slice(1).map((tr) => [...tr.cells].map((c) => c.textContent)) : [];
    });
    const first = document.querySelector('section');
    const bt = document.querySelector('#benchmark-table');
    return {
      plots, cards, tables, sections: document.querySelectorAll('section.input').length,
      firstSection: first ? first.id : null, benchmarkRows: bt ? bt.rows.length - 1 : 0,
    };
  });
  if (shot) await page.screenshot({ path: join(artifacts, shot), fullPage: true });
  await context.close();
  return { errors, external, drawn };
}

const close = (text, value) => {
  const x = Number(text);
  return Number.isFinite(x) && Math.abs(x - value) <= Math.max(6e-4, 1e-3 * Math.abs(value));
};

function checkInput(doc, drawn, i) {
  const inp = doc.inputs[i];
  const id = inp.sections.intrinsic_dimension;
  assert.equal(id.status, 'ok', JSON.stringify(id.note));
  const curve = id.value.scale_curve.filter((p) => (p.method === 'gride' ? p.mean_r_n2 : p.mean_r1) > 0);
  const scale = drawn.plots[`scale-${i}`];
  assert.ok(scale && scale.width > 100 && scale.height > 100, `scale plot ${i} drawn`);
  assert.equal(scale.marks, curve.length, `scale plot ${i}: one marker per curve point`);
  assert.ok(scale.lines >= 1, 'scale curve lines drawn');
  const lid = inp.sections.lid;
  assert.equal(lid.status, 'ok');
  const hist = drawn.plots[`lid-${i}`];
  assert.equal(hist.marks, lid.value.histogram.counts.filter((c) => c > 0).length, `LID histogram ${i}: one bar per non-empty bin`);
  const sp = inp.sections.spectrum;
  assert.equal(sp.status, 'ok');
  const spec = drawn.plots[`spectrum-${i}`];
  assert.equal(spec.marks, sp.value.eigenvalues.filter((v) => v > 0).length, `spectrum ${i}: one marker per positive eigenvalue`);
  if (sp.value.alpha_req) assert.equal(spec.lines, 2, 'eigenvalue line and α fit drawn');
  // Numbers on the page equal the JSON's.
  const [n, d, dup, dim] = drawn.cards[i];
  assert.equal(Number(n), inp.n);
  assert.equal(Number(d), inp.d);
  assert.equal(Number(dup), inp.duplicates_merged);
  assert.ok(!dim.includes('±'), 'the headline shows the value alone; the summary gives the spread');
  assert.ok(close(dim.trim(), id.value.dimension.value), `card ${dim} vs ${id.value.dimension.value}`);
  const rows = drawn.tables[i];
  assert.equal(rows.length, id.value.estimates.length);
  id.value.estimates.forEach((e, r) => {
    assert.equal(rows[r][0], e.estimator);
    assert.ok(close(rows[r][1], e.value), `${e.estimator}: page ${rows[r][1]} vs json ${e.value}`);
  });
}

test('report of one embedding file draws every plot offline, with the JSON numbers', async () => {
  const input = join(fixtures, 'minilm_sentences_0_2000.npy');
  const r = runReport(['report', input]);
  assert.equal(r.code, 0, r.stderr);
  const doc = readReport(r.out);
  assert.equal(doc.schema, 'repscope.report/2');
  const { errors, external, drawn } = await load(join(r.out, 'report.html'), 'report-minilm.png');
  assert.deepEqual(errors, [], 'no console errors');
  assert.deepEqual(external, [], 'no network requests');
  assert.equal(drawn.sections, doc.inputs.length);
  doc.inputs.forEach((_, i) => checkInput(doc, drawn, i));
});

test('layers and classes: heatmaps, ID across depth and the class table', async () => {
  const layers = ['layer0', 'layer1', 'layer4', 'layer6'].map((l) => join(fixtures, `minilm_layers_${l}_0_500.npy`));
  const r = runReport(['report', ...layers]);
  assert.equal(r.code, 0, r.stderr);
  const doc = readReport(r.out);
  assert.equal(doc.layers.status, 'ok');
  const { errors, external, drawn } = await load(join(r.out, 'report.html'), 'report-layers.png');
  assert.deepEqual(errors, []);
  assert.deepEqual(external, []);
  const nl = layers.length;
  assert.equal(drawn.plots['layers-cka'].marks, nl * nl, 'one CKA cell per layer pair');
  assert.equal(drawn.plots['layers-mknn'].marks, nl * nl, 'one mutual-kNN cell per layer pair');
  assert.equal(drawn.plots['layers-id'].marks, doc.layers.value.layers.filter((l) => l.id).length);
  const ranked = doc.layers.value.layers.filter((l) => l.spectrum);
  assert.equal(drawn.plots['layers-rank'].marks, 2 * ranked.length, 'effective rank and participation ratio per layer');
  doc.inputs.forEach((_, i) => checkInput(doc, drawn, i));

  const c = runReport(['report', join(fixtures, 'minilm_sentences_0_2000.npy'), '--labels', join(fixtures, 'minilm_labels_0_2000.npy')]);
  assert.equal(c.code, 0, c.stderr);
  const cdoc = readReport(c.out);
  const cls = cdoc.inputs[0].sections.classes;
  assert.equal(cls.status, 'ok');
  const page = await load(join(c.out, 'report.html'), 'report-classes.png');
  assert.deepEqual(page.errors, []);
  const html = readFileSync(join(c.out, 'report.html'), 'utf8');
  assert.match(html, /Class geometry/);
  const nc1 = cls.value.neural_collapse.nc1;
  assert.ok(html.includes(nc1 >= 100 ? nc1.toFixed(1) : nc1.toFixed(3)), 'NC1 from the JSON is on the page');
});

test('a bad label file is refused like the classes command refuses it; a full output folder needs --force', () => {
  const input = join(fixtures, 'minilm_sentences_0_2000.npy');
  const r = runReport(['report', input, '--labels', join(fixtures, 'minilm_labels_0_2000.npy').replace('0_2000', '0_2000')]);
  assert.equal(r.code, 0, r.stderr);
  const bad = spawnSync(bin, ['report', join(fixtures, 'minilm_layers_layer0_0_500.npy'), '--labels', join(fixtures, 'minilm_labels_0_2000.npy'), '-o', mkdtempSync(join(tmpdir(), 'rs-')), '--force'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /2000 labels/);
  const full = spawnSync(bin, ['report', input, '-o', r.out], { encoding: 'utf8' });
  assert.equal(full.status, 2);
  assert.match(full.stderr, /--force/);
});

test('the schema rejects a document that breaks it', () => {
  assert.equal(validate({ schema: 'repscope.report/2', inputs: [] }), false);
  assert.equal(validate({ schema: 'repscope.report/2', repscope_version: '0', command: '', seed: 0,
    inputs: [{ name: 'x', n: 1, d: 1, n_distinct: 1, duplicates_merged: 0, sample: null,
      sections: { intrinsic_dimension: { status: 'ok', note: null, value: 3 }, lid: { status: 'skipped', note: 'x', value: null },
        spectrum: { status: 'failed', note: 'x', value: null } } }] }), false, 'an ok section must hold an object');
});

test('demo report covers the 24 benchmark manifolds', async () => {
  const out = mkdtempSync(join(tmpdir(), 'repscope-demo-'));
  const stdout = execFileSync(bin, ['demo', '-n', '500', '-o', out, '--quiet'], { encoding: 'utf8' });
  assert.match(stdout, /report\.html/);
  const doc = readReport(out);
  assert.equal(doc.inputs.length, 24);
  const { errors, external, drawn } = await load(join(out, 'report.html'), 'report-demo.png');
  {
    // The overview on its own, for a reviewer.
    const { context, page } = await open(join(out, 'report.html'));
    await page.locator('#benchmark').screenshot({ path: join(artifacts, 'report-demo-benchmark.png') });
    await context.close();
  }
  assert.deepEqual(errors, []);
  assert.deepEqual(external, []);
  assert.equal(drawn.sections, 24);
  doc.inputs.forEach((_, i) => checkInput(doc, drawn, i));
  // The page opens with the 24-manifold overview: estimate against truth for every estimator.
  const b = doc.benchmark;
  assert.equal(b.manifolds.length, 24);
  const scatter = drawn.plots['benchmark-scatter'];
  const estimates = b.manifolds.flatMap((m) => m.estimates.filter((v) => v !== null)).length;
  assert.equal(scatter.marks, estimates, 'one point per manifold and estimator');
  assert.equal(scatter.lines, 1, 'the diagonal');
  assert.ok(drawn.firstSection === 'benchmark', `the page opens with the overview, not ${drawn.firstSection}`);
  assert.equal(drawn.benchmarkRows, 24 + 1, 'a row per manifold and the mean relative error');
  for (const [k, e] of b.estimators.entries()) {
    const errs = b.manifolds.filter((m) => m.estimates[k] !== null).map((m) => Math.abs(m.estimates[k] - m.true_dimension) / m.true_dimension);
    assert.ok(Math.abs(b.mean_relative_error[k] - errs.reduce((a, x) => a + x, 0) / errs.length) < 1e-12, e);
  }
});

/** The value a JSON pointer names in a document. */
function at(doc, pointer) {
  return pointer.split('/').slice(1).reduce((v, k) => (v === undefined ? v : v[k.replace(/~1/g, '/').replace(/~0/g, '~')]), doc);
}

/** Whether a number as shown equals the value to the precision it is shown with (half a unit of its last digit). */
function shownEquals(text, value) {
  const x = Number(text);
  if (!Number.isFinite(x)) return false;
  if (/e/i.test(text)) return Math.abs(x - value) <= 5e-3 * Math.abs(value);
  const decimals = (text.split('.')[1] ?? '').length;
  return Math.abs(x - value) <= 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12;
}

test('the labelled MiniLM report answers first, draws the classes and matches the JSON', async () => {
  const r = runReport(['report', join(fixtures, 'minilm_sentences_0_2000.npy'), '--labels', join(fixtures, 'minilm_labels_0_2000.npy'),
    '--label-names', join(fixtures, 'minilm_label_names.txt'), '--search']);
  assert.equal(r.code, 0, r.stderr);
  const doc = readReport(r.out);
  const inp = doc.inputs[0];
  const { context, page, errors, external } = await open(join(r.out, 'report.html'));
  const seen = await page.evaluate(() => {
    const nums = [...document.querySelectorAll('#summary-0 .num')].map((s) => ({ text: s.textContent, pointer: s.dataset.pointer, scale: Number(s.dataset.scale) }));
    const answers = [...document.querySelectorAll('#summary-0 .answer')].map((p) => ({ topic: p.dataset.topic, text: p.textContent }));
    const map = document.querySelector('#map-0');
    const marks = [...map.querySelectorAll('.mark')];
    const fills = new Set(marks.map((m) => m.getAttribute('fill')));
    const hovers = marks.map((m) => m.querySelector('title').textContent);
    const heat = document.querySelector('#class-cdnv-0');
    const plots = [...document.querySelectorAll('svg.plot')].map((svg) => {
      const attrs = [...svg.querySelectorAll('*')].flatMap((el) => [...el.attributes].map((a) => a.value));
      return {
        id: svg.id,
        nan: /NaN|undefined|Infinity/.test(svg.textContent) || attrs.some((v) => /NaN|undefined|Infinity/.test(v)),
        ticks: [...svg.querySelectorAll('.tick')].filter((t) => t.textContent.trim() !== '').length,
        marks: [...svg.querySelectorAll('.mark')].filter((m) => { const b = m.getBBox(); return b.width > 0 && b.height > 0; }).length,
      };
    });
    const t = performance.getEntriesByType('navigation')[0];
    return { nums, answers, marks: marks.length, fills: fills.size, hovers, heatCells: heat ? heat.querySelectorAll('.mark').length : 0, plots, loadMs: t.loadEventEnd - t.startTime };
  });
  assert.deepEqual(errors, [], 'no console errors');
  assert.deepEqual(external, [], 'no network requests');
  // The summary states the spread, and every number in it is the JSON's value.
  const idLine = seen.answers.find((a) => a.topic === 'intrinsic_dimension');
  assert.match(idLine.text, /range from .* to .*across scales it reads .* at neighbour distance .* and .* at /);
  assert.ok(seen.answers.some((a) => a.topic === 'spectrum' && /directions/.test(a.text)));
  assert.ok(seen.answers.some((a) => a.topic === 'classes' && /49 classes/.test(a.text)));
  assert.ok(seen.nums.length >= 10, `${seen.nums.length} numbers in the summary`);
  for (const n of seen.nums) {
    const v = at(doc, n.pointer);
    assert.equal(typeof v, 'number', `${n.pointer} names a number`);
    assert.ok(shownEquals(n.text, v * n.scale), `summary shows ${n.text} for ${n.pointer} = ${v}`);
  }
  const ests = inp.sections.intrinsic_dimension.value.estimates.filter((e) => !e.estimator.startsWith('pca_')).map((e) => e.value);
  const pointed = seen.nums.map((n) => at(doc, n.pointer));
  assert.ok(pointed.includes(Math.min(...ests)) && pointed.includes(Math.max(...ests)), 'the spread across estimators');
  // The map: one mark per sampled point, one colour per class present.
  assert.equal(seen.marks, inp.map.rows.length);
  assert.equal(seen.fills, new Set(inp.map.classes).size);
  // Hovering a point shows its exact coordinates: every title reads back as a point of the JSON, bit for bit.
  const points = new Set(inp.map.x.map((x, i) => `${x} ${inp.map.y[i]}`));
  for (const t of seen.hovers) {
    const m = t.match(/x = (\S+), y = (\S+)$/);
    assert.ok(m && points.has(`${Number(m[1])} ${Number(m[2])}`), `hover "${t}" is a point of the map`);
  }
  // The heatmap: C × C cells.
  const c = inp.sections.classes.value.pairs.classes.length;
  assert.equal(c, inp.sections.classes.value.n_classes);
  assert.equal(seen.heatCells, c * c);
  // Per-class bars: one per class (49 ≤ 50), drawn.
  for (const id of ['class-size-0', 'class-ncc-0', 'class-knn-0', 'class-var-0']) {
    assert.equal(seen.plots.find((p) => p.id === id).marks, c, id);
  }
  // No plot holds NaN or an empty axis.
  for (const p of seen.plots) {
    assert.ok(!p.nan, `${p.id} holds no NaN`);
    assert.ok(p.ticks >= 2, `${p.id} has axis labels`);
    assert.ok(p.marks > 0 || p.id.startsWith('cumulative'), `${p.id} draws something`);
  }
  assert.ok(seen.loadMs < 1000, `opens in ${seen.loadMs} ms`);
  // The search study: one point per ef_search and per compressed representation.
  const st = inp.sections.search.value;
  assert.equal(seen.plots.find((p) => p.id === 'search-ef-0').marks, st.ef_curve.length);
  assert.equal(seen.plots.find((p) => p.id === 'search-bytes-0').marks, st.compression.points.length);
  assert.ok(seen.answers.some((a) => a.topic === 'search' && /HNSW/.test(a.text)));
  assert.equal(await page.locator('text=cannot be read').count(), 0, 'every section reads back as its typed struct');
  assert.ok(seen.plots.some((p) => p.id === 'activations-0'), 'the activations picture');
  // Tables sort by column: click "rows" once for ascending.
  const table = page.locator('#classes-block-0 table.sortable');
  await table.locator('th', { hasText: 'rows' }).click();
  const rows = await table.evaluate((t) => [...t.rows].slice(1).map((r) => Number(r.cells[1].textContent)));
  assert.deepEqual(rows, [...rows].sort((a, b) => a - b), 'sorted ascending by rows');
  // A screenshot of each section for a reviewer (test artifacts, not committed).
  const blocks = await page.locator('.block').all();
  for (const [i, b] of blocks.entries()) {
    const id = (await b.getAttribute('id')) ?? `block-${i}`;
    await b.screenshot({ path: join(artifacts, `minilm-labelled-${id}.png`) });
  }
  await page.screenshot({ path: join(artifacts, 'minilm-labelled.png'), fullPage: true });
  await context.close();
});

test('a 20,000-row report stays one file under 2 MB and opens in under a second', async () => {
  // 20,000 rows of a 6-dimensional curved set in 64 dimensions, 12 classes, written here as .npy.
  const n = 20000, d = 64, dir = mkdtempSync(join(tmpdir(), 'repscope-big-'));
  const x = new Float32Array(n * d);
  let s = 12345;
  const rand = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
  const labels = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const t = Array.from({ length: 6 }, () => rand() * 2 * Math.PI);
    for (let j = 0; j < d; j++) x[i * d + j] = Math.sin(t[j % 6] * (1 + (j % 5))) + 0.01 * rand();
    labels[i] = BigInt(Math.floor(t[0] / (2 * Math.PI) * 12));
  }
  const npy = (descr, shape, bytes) => {
    let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
    const pad = 64 - ((10 + header.length + 1) % 64);
    header += ' '.repeat(pad % 64) + '\n';
    const pre = Buffer.alloc(10);
    Buffer.from([0x93]).copy(pre, 0); pre.write('NUMPY', 1, 'latin1'); pre[6] = 1; pre[7] = 0; pre.writeUInt16LE(header.length, 8);
    return Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(bytes.buffer)]);
  };
  const xp = join(dir, 'x.npy');
  const lp = join(dir, 'labels.npy');
  writeFileSync(xp, npy('<f4', [n, d], x));
  writeFileSync(lp, npy('<i8', [n], labels));
  const r = runReport(['report', xp, '--labels', lp]);
  assert.equal(r.code, 0, r.stderr);
  const doc = readReport(r.out);
  const size = statSync(join(r.out, 'report.html')).size;
  assert.ok(size < 2 * 1024 * 1024, `report.html is ${size} bytes`);
  assert.equal(doc.inputs[0].map.rows.length, 3000, 'a seeded sample of the rows is drawn');
  const { context, page, errors, external } = await open(join(r.out, 'report.html'));
  assert.deepEqual(errors, []);
  assert.deepEqual(external, []);
  const ms = await page.evaluate(() => { const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime; });
  assert.ok(ms < 1000, `opens in ${ms} ms`);
  assert.equal(await page.locator('#map-0 .mark').count(), 3000);
  await context.close();
});
