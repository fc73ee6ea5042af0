// The identity analyzer's portal pages in headless Chromium, driven by
// crates/brevet-cli/tests/e2e/analyzer.rs: an admin signs in with a token, sees the risk chart
// and the escalation graph, filters the findings, opens one, copies a proposed profile, and
// uploads GCP exports through the form (the browser's own multipart); a non-admin is refused. Screenshots are saved as test artifacts. Prints one JSON line.
import assert from 'node:assert/strict';

import { launchBrowser, screenshot } from './lib.mjs';

const base = process.env.BREVET_URL;
assert.ok(base, 'BREVET_URL must be set');

async function signIn(browser, token) {
  const context = await browser.newContext();
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await page.fill('#token', token);
  await page.locator('form button[type=submit]').last().click();
  await page.waitForURL(`${base}/access`);
  return page;
}

const browser = await launchBrowser();
const result = {};
try {
  const admin = await signIn(browser, process.env.BREVET_TOKEN);
  await admin.locator('nav a[href="/analyzer"]').click();
  await admin.waitForURL(`${base}/analyzer`);
  // The risk summary chart and the escalation graph, server-rendered SVG.
  result.bars = await admin.locator('section[data-cloud] svg.summary g.bar').count();
  result.graph_nodes = await admin.locator('section[data-cloud="aws"] svg.graph g.node').count();
  assert.ok(await admin.locator('section[data-cloud="aws"] svg.graph g.node.admin').count() >= 1, 'an admin node');
  assert.ok(await admin.locator('section[data-cloud="aws"] svg.graph g.edge').count() >= 1, 'an edge');
  await screenshot(admin, 'analyzer-01-overview');
  // Pointing at a principal lights its way to admin and dims the rest; the buttons zoom.
  const graph = admin.locator('section[data-cloud="aws"] svg.graph');
  const start = admin.locator('section[data-cloud="aws"] svg.graph g.node:not(.admin)').first();
  await start.hover();
  await admin.locator('section[data-cloud="aws"] svg.graph.dimmed').waitFor();
  result.lit_edges = await graph.locator('g.edge.hl').count();
  assert.ok(result.lit_edges >= 1, 'a path lit');
  assert.ok(await graph.locator('g.node.admin.hl').count() >= 1, 'it ends at an admin');
  await screenshot(admin, 'analyzer-01b-path-lit');
  const width = Number(await graph.getAttribute('width'));
  await admin.locator('section[data-cloud="aws"] button[data-zoom="zoom-in"]').click();
  result.zoomed = Number(await graph.getAttribute('width')) / width;
  assert.ok(result.zoomed > 1.2, `zoomed ${result.zoomed}`);
  await admin.locator('section[data-cloud="aws"] button[data-zoom="zoom-reset"]').click();
  assert.equal(Number(await graph.getAttribute('width')), width);
  // The graph is a way in: a principal clicked shows its findings.
  const node = admin.locator('section[data-cloud="aws"] svg.graph a g.node:not(.admin)').first();
  const who = await node.getAttribute('data-principal');
  await node.click();
  await admin.waitForURL(/\/analyzer\?cloud=aws&q=/);
  assert.ok(await admin.locator('table.findings tbody tr').count() >= 1, `findings of ${who}`);
  result.clicked = who;
  await admin.goto(`${base}/analyzer`);

  // Filter: critical findings on AWS only.
  await admin.selectOption('#f-cloud', 'aws');
  await admin.selectOption('#f-severity', 'critical');
  await admin.click('#apply-filters');
  await admin.waitForURL(/severity=critical/);
  const rows = admin.locator('table.findings tbody tr');
  assert.ok(await rows.count() >= 1, 'critical findings shown');
  for (const sev of await admin.locator('table.findings .sev').allTextContents()) assert.equal(sev, 'critical');
  assert.equal(await admin.locator('section[data-cloud="azure"]').count(), 0, 'the azure section is filtered out');
  await screenshot(admin, 'analyzer-02-filtered');

  // Open a finding: who holds it, the path, the proposal; copy the proposed profile.
  await rows.first().locator('a').click();
  await admin.waitForURL(/\/analyzer\/findings\/[0-9a-f]+$/);
  assert.match(await admin.locator('#finding').innerText(), /Admin-equivalent/);
  assert.ok(await admin.locator('#holders tbody tr').count() >= 1);
  const copy = admin.locator('.proposal button[data-copy$="-config"]').first();
  await copy.click();
  await admin.locator('.proposal button[data-copied]').first().waitFor();
  result.copied = await admin.evaluate(() => navigator.clipboard.readText());
  await screenshot(admin, 'analyzer-03-finding');

  // Upload GCP exports through the form, as a browser sends them.
  await admin.goto(`${base}/analyzer`);
  await admin.locator('#upload summary').click();
  await admin.selectOption('#u-cloud', 'gcp');
  await admin.setInputFiles('#u-exports', process.env.BREVET_UPLOAD_GCP.split('\n'));
  await admin.click('#upload-submit');
  await admin.waitForURL(`${base}/analyzer?cloud=gcp`);
  const uploaded = admin.locator('section[data-cloud="gcp"][data-source="upload"]');
  assert.ok(await uploaded.locator('svg.summary g.bar').count() >= 1, 'the upload is analysed');
  result.uploaded_findings = await uploaded.locator('table.findings tbody tr').count();
  await screenshot(admin, 'analyzer-04-uploaded');

  // A requester may not see the analysis.
  const alice = await signIn(browser, process.env.BREVET_NOT_ADMIN);
  const response = await alice.goto(`${base}/analyzer`);
  result.not_admin_status = response.status();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
