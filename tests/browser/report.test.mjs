// The HTML report in a real browser: headless Chromium loads report.html from a file:// URL with the
// network disabled. Every plot must be drawn (rendered SVG data marks counted against report.json), the
// numbers on the page must match report.json, there must be no console errors and no request may leave
// the file. A full-page screenshot is saved to target/test-artifacts/ for people to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, existsSync } from 'node:fs';
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

const schema = JSON.parse(readFileSync(join(root, 'schema', 'report-1.json'), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
function readReport(dir) {
  const doc = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
  assert.ok(validate(doc), `report.json does not match schema/report-1.json: ${JSON.stringify(validate.errors, null, 1)}`);
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

/** Loads a page offline and returns what was drawn. */
async function load(htmlPath, shot) {
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
    return { plots, cards, tables, sections: document.querySelectorAll('section.input').length };
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
  assert.ok(close(dim.split('±')[0].trim(), id.value.dimension.value), `card ${dim} vs ${id.value.dimension.value}`);
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
  assert.equal(doc.schema, 'repscope.report/1');
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
  assert.equal(validate({ schema: 'repscope.report/1', repscope_version: '0', command: '', seed: 0,
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
  assert.deepEqual(errors, []);
  assert.deepEqual(external, []);
  assert.equal(drawn.sections, 24);
  doc.inputs.forEach((_, i) => checkInput(doc, drawn, i));
});
