// Drives the stock WatermelonDB client (LokiJS adapter, headless Node) against a running server.
// Usage: BASE_URL=... ANA_TOKEN=... ANA_ID=... HQ_TOKEN=... TEMPLATE_ID=... SITE_ID=...
//        OTHER_SITE_ID=... node scenarios.js
// Exits non-zero with the failing scenario's message when any expectation fails.
'use strict'

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { Database, Model, appSchema, tableSchema, Q } = require('@nozbe/watermelondb')
const LokiJSAdapter = require('@nozbe/watermelondb/adapters/lokijs').default
const { synchronize } = require('@nozbe/watermelondb/sync')

const { BASE_URL, ANA_TOKEN, ANA_ID, HQ_TOKEN, TEMPLATE_ID, SITE_ID, OTHER_SITE_ID } = process.env

const col = (name, type, isOptional = true) => ({ name, type, isOptional })
const schema = appSchema({
  version: 1,
  tables: [
    tableSchema({ name: 'sites', columns: [col('server_rev', 'number'), col('region_id', 'string'),
      col('name', 'string'), col('code', 'string'), col('timezone', 'string'), col('address', 'string')] }),
    tableSchema({ name: 'templates', columns: [col('server_rev', 'number'), col('template_key', 'string'),
      col('version', 'number'), col('category', 'string'), col('title_zh', 'string'),
      col('title_en', 'string'), col('pass_threshold', 'number'), col('body', 'string')] }),
    tableSchema({ name: 'occurrences', columns: [col('server_rev', 'number'), col('schedule_id', 'string'),
      col('template_id', 'string'), col('site_id', 'string'), col('assignee_id', 'string'),
      col('window_start', 'number'), col('due_at', 'number'), col('miss_at', 'number'),
      col('status', 'string'), col('inspection_id', 'string')] }),
    tableSchema({ name: 'inspections', columns: [col('server_rev', 'number'), col('base_rev', 'number'),
      col('template_id', 'string'), col('site_id', 'string'), col('occurrence_id', 'string'),
      col('area', 'string'), col('mode', 'string'), col('status', 'string'), col('started_at', 'number'),
      col('completed_at', 'number'), col('notes', 'string'), col('latitude', 'number'),
      col('longitude', 'number'), col('inspector_id', 'string'), col('score', 'number'),
      col('max_score', 'number'), col('score_percent', 'number'), col('grade', 'string'),
      col('passed', 'boolean'), col('critical_failed', 'boolean'), col('media_complete', 'boolean'),
      col('review_state', 'string'), col('review_comment', 'string'), col('has_conflicts', 'boolean')] }),
    tableSchema({ name: 'responses', columns: [col('server_rev', 'number'), col('base_rev', 'number'),
      col('inspection_id', 'string'), col('item_key', 'string'), col('value', 'string'),
      col('note', 'string'), col('answered_at', 'number'), col('failed', 'boolean'),
      col('item_score', 'number')] }),
    tableSchema({ name: 'attachments', columns: [col('server_rev', 'number'), col('base_rev', 'number'),
      col('inspection_id', 'string'), col('response_id', 'string'), col('action_id', 'string'),
      col('kind', 'string'), col('sha256', 'string'), col('mime', 'string'), col('byte_size', 'number'),
      col('captured_at', 'number'), col('latitude', 'number'), col('longitude', 'number'),
      col('signer_name', 'string'), col('signer_role', 'string'), col('signed_at', 'number'),
      col('signed_content_sha256', 'string'), col('uploaded', 'boolean'), col('width', 'number'),
      col('height', 'number')] }),
    tableSchema({ name: 'actions', columns: [col('server_rev', 'number'), col('base_rev', 'number'),
      col('inspection_id', 'string'), col('response_id', 'string'), col('site_id', 'string'),
      col('title', 'string'), col('description', 'string'), col('priority', 'string'),
      col('assignee_id', 'string'), col('due_at', 'number'), col('status', 'string'),
      col('resolution_note', 'string'), col('created_by', 'string'), col('verified_by', 'string'),
      col('verified_at', 'number')] }),
  ],
})

const modelClasses = ['sites', 'templates', 'occurrences', 'inspections', 'responses', 'attachments', 'actions']
  .map((table) => { const C = class extends Model {}; C.table = table; return C })

class Device {
  constructor (name, token) {
    this.name = name
    this.token = token
    this.db = new Database({
      adapter: new LokiJSAdapter({ schema, dbName: name, useWebWorker: false,
        useIncrementalIndexedDB: false, extraLokiOptions: { autosave: false } }),
      modelClasses,
    })
    this.pageSize = 1000
    this.pages = 0; this.largestPage = 0
    this.beforePush = null // hook to make a push stale or lose its response
    this.loseNextResponse = false
  }

  async api (method, path, body, headers = {}) {
    const res = await fetch(BASE_URL + path, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, 'X-Device-Id': this.name,
        'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    return { status: res.status, body: text ? JSON.parse(text) : null }
  }

  async sync () {
    await synchronize({
      database: this.db,
      sendCreatedAsUpdated: true,
      pullChanges: async ({ lastPulledAt }) => {
        // The server pages; merge the pages into the one change set synchronize() expects.
        const merged = {}
        let cursor = lastPulledAt
        for (;;) {
          const qs = new URLSearchParams({ limit: String(this.pageSize) })
          if (cursor) qs.set('last_pulled_at', String(cursor))
          const res = await this.api('GET', `/api/v1/sync/pull?${qs}`)
          if (res.status !== 200) throw new Error(`pull ${res.status}: ${JSON.stringify(res.body)}`)
          const size = Object.values(res.body.changes).reduce((n, ch) => n + ch.updated.length + ch.deleted.length, 0)
          this.pages += 1; this.largestPage = Math.max(this.largestPage, size)
          for (const [table, ch] of Object.entries(res.body.changes)) {
            const m = merged[table] || (merged[table] = { created: [], updated: [], deleted: [] })
            const byId = new Map(m.updated.map((r) => [r.id, r]))
            for (const r of ch.updated) byId.set(r.id, r)
            m.updated = [...byId.values()].filter((r) => !ch.deleted.includes(r.id))
            m.deleted.push(...ch.deleted)
          }
          cursor = res.body.timestamp
          if (!res.body.has_more) return { changes: merged, timestamp: cursor }
        }
      },
      pushChanges: async ({ changes, lastPulledAt }) => {
        if (this.beforePush) { const hook = this.beforePush; this.beforePush = null; await hook() }
        const body = { changes, last_pulled_at: lastPulledAt }
        const key = crypto.createHash('sha256').update(this.name + JSON.stringify(body)).digest('hex')
        const res = await this.api('POST', '/api/v1/sync/push', body, { 'Idempotency-Key': key })
        if (this.loseNextResponse) { this.loseNextResponse = false; throw new Error('response lost') }
        if (res.status !== 200) {
          const err = new Error(`push ${res.status}: ${JSON.stringify(res.body)}`)
          err.status = res.status
          throw err
        }
        this.lastConflicts = res.body.conflicts
      },
    })
  }

  async syncUntilClean (attempts = 4) {
    for (let i = 0; i < attempts; i++) {
      try { await this.sync(); return } catch (e) { if (e.status !== 409 && e.message !== 'response lost') throw e; this.lastError = e }
    }
    throw new Error(`${this.name} could not sync: ${this.lastError}`)
  }

  coll (table) { return this.db.get(table) }
  async all (table) { return this.coll(table).query().fetch() }
  async find (table, id) { try { return await this.coll(table).find(id) } catch (e) { return null } }
  async live (table) { return (await this.all(table)).map((r) => r._raw) }

  async create (table, fields) {
    let made
    await this.db.write(async () => {
      made = await this.coll(table).create((r) => { for (const [k, v] of Object.entries(fields)) r._setRaw(k, v) })
    })
    return made.id
  }

  async edit (table, id, fields) {
    const rec = await this.coll(table).find(id)
    await this.db.write(async () => {
      await rec.update((r) => {
        // The app marks which server version its first local edit is based on.
        if (r._raw._status === 'synced' && r._raw.server_rev) r._setRaw('base_rev', r._raw.server_rev)
        for (const [k, v] of Object.entries(fields)) r._setRaw(k, v)
      })
    })
  }

  async remove (table, id) {
    const rec = await this.coll(table).find(id)
    await this.db.write(async () => { await rec.markAsDeleted() })
  }
}

const now = () => Date.now()
const newInspection = (dev, fields = {}) => dev.create('inspections', { template_id: TEMPLATE_ID,
  site_id: SITE_ID, status: 'in_progress', started_at: now(), area: 'Room 1203', ...fields })
const answer = (dev, inspectionId, key, value) => dev.create('responses', { inspection_id: inspectionId,
  item_key: key, value: JSON.stringify(value), answered_at: now() })

async function data (dev, table) {
  const rows = await dev.live(table)
  return rows.map(({ _status, _changed, base_rev: _b, ...rest }) => rest)
    .sort((a, b) => a.id.localeCompare(b.id))
}

async function assertConverged (...devices) {
  // "After everyone syncs": a device that just pushed pulls back the server's view once more.
  for (let round = 0; round < 2; round++) for (const dev of devices) await dev.syncUntilClean()
  for (const table of ['inspections', 'responses', 'actions']) {
    const first = await data(devices[0], table)
    for (const dev of devices.slice(1)) assert.deepEqual(await data(dev, table), first, `${table} differ on ${dev.name}`)
  }
}

const scenarios = {
  async twoDevicesSync () {
    const a = new Device('a1', ANA_TOKEN); const b = new Device('b1', ANA_TOKEN)
    await a.sync(); await b.sync()
    const sites = await b.live('sites')
    assert.ok(sites.length === 2, 'Ana sees her two sites')
    const id = await newInspection(a)
    await answer(a, id, 'clean', 'yes'); await answer(a, id, 'fridge', 4)
    await a.sync(); await b.sync(); await a.sync()
    const rec = await b.find('inspections', id)
    assert.equal(rec._raw.score_percent, 100, 'server-computed score arrives')
    await assertConverged(a, b)
  },

  async perFieldMerge () {
    const a = new Device('a2', ANA_TOKEN); const b = new Device('b2', ANA_TOKEN)
    await a.sync()
    const id = await newInspection(a)
    await a.sync(); await b.sync()
    await a.edit('inspections', id, { notes: 'notes from A' })
    await b.edit('inspections', id, { area: 'Room 1204' })
    await a.sync(); await b.sync(); await a.sync()
    for (const dev of [a, b]) {
      const r = (await dev.find('inspections', id))._raw
      assert.equal(r.notes, 'notes from A'); assert.equal(r.area, 'Room 1204')
    }
    await assertConverged(a, b)
  },

  async stalePushRetries () {
    const a = new Device('a3', ANA_TOKEN); const b = new Device('b3', ANA_TOKEN)
    await a.sync()
    const id = await newInspection(a)
    await a.sync(); await b.sync()
    await b.edit('inspections', id, { notes: 'B was here' })
    await a.edit('inspections', id, { area: 'Lobby' })
    // Between B's pull and B's push, A syncs: B's push is stale.
    b.beforePush = () => a.sync()
    await assert.rejects(b.sync(), (e) => e.status === 409)
    await b.sync(); await a.sync()
    const r = (await a.find('inspections', id))._raw
    assert.equal(r.notes, 'B was here'); assert.equal(r.area, 'Lobby')
    await assertConverged(a, b)
  },

  async completedStaysCompleted () {
    const a = new Device('a4', ANA_TOKEN); const stale = new Device('s4', ANA_TOKEN)
    await a.sync()
    const id = await newInspection(a)
    await answer(a, id, 'clean', 'yes'); await answer(a, id, 'fridge', 3)
    await a.sync(); await stale.sync()
    await a.edit('inspections', id, { status: 'completed', completed_at: now() })
    await a.sync()
    await stale.edit('inspections', id, { notes: 'edited after completion' })
    await stale.syncUntilClean()
    assert.ok(stale.lastConflicts.some((c) => c.kind === 'locked'), 'the stale edit is a conflict')
    await stale.sync(); await a.sync()
    const r = (await stale.find('inspections', id))._raw
    assert.equal(r.status, 'completed'); assert.equal(r.notes, null)
    await assertConverged(a, stale)
  },

  async deletesDoNotResurrect () {
    const a = new Device('a5', ANA_TOKEN); const b = new Device('b5', ANA_TOKEN)
    await a.sync()
    const ghost = await newInspection(a)
    await a.remove('inspections', ghost) // created and deleted offline: never sent
    const kept = await newInspection(a)
    const doomed = await newInspection(a)
    await a.sync(); await b.sync()
    await a.remove('inspections', doomed)
    await a.sync(); await b.sync(); await a.sync()
    assert.equal(await b.find('inspections', ghost), null)
    assert.equal(await b.find('inspections', doomed), null)
    assert.equal(await a.find('inspections', doomed), null)
    assert.ok(await b.find('inspections', kept))
    const server = await a.api('GET', '/api/v1/sync/pull')
    const ids = server.body.changes.inspections.updated.map((r) => r.id)
    assert.ok(!ids.includes(ghost) && !ids.includes(doomed) && ids.includes(kept))
  },

  async lostResponseRetryCreatesNoDuplicates () {
    const a = new Device('a6', ANA_TOKEN)
    await a.sync()
    const id = await newInspection(a)
    await answer(a, id, 'clean', 'no')
    a.loseNextResponse = true
    await assert.rejects(a.sync(), /response lost/)
    await a.sync()
    const fresh = new Device('f6', ANA_TOKEN)
    await fresh.sync()
    const responses = (await fresh.live('responses')).filter((r) => r.inspection_id === id)
    assert.equal(responses.length, 1, 'exactly one response on the server')
    assert.equal((await fresh.live('inspections')).filter((r) => r.id === id).length, 1)
    await assertConverged(a, fresh)
  },

  async manyPagesConverge () {
    const a = new Device('a7', ANA_TOKEN)
    await a.sync()
    for (let i = 0; i < 12; i++) { const id = await newInspection(a, { area: `Room ${i}` }); await answer(a, id, 'clean', 'yes') }
    await a.sync()
    const small = new Device('p7', ANA_TOKEN); small.pageSize = 5
    await small.sync()
    const big = new Device('q7', ANA_TOKEN)
    await big.sync()
    await assertConverged(a, small, big)
  },

  async revokedSiteKeepsOfflineEdits () {
    // The client pulls before it pushes and destroys pulled deletions even over local edits:
    // the server holds a lost site's deletions one sync, so the edits made there arrive first.
    const hq = new Device('hq8', HQ_TOKEN)
    const grant = await hq.api('POST', '/api/v1/assignments', { user_id: ANA_ID, site_id: OTHER_SITE_ID })
    assert.equal(grant.status, 201, JSON.stringify(grant.body))
    const a = new Device('a8', ANA_TOKEN)
    await a.sync()
    const id = await newInspection(a, { site_id: OTHER_SITE_ID })
    await a.sync()
    await a.edit('inspections', id, { notes: 'written before the news of the revoke' })
    assert.equal((await hq.api('DELETE', `/api/v1/assignments/${grant.body.id}`)).status, 204)
    await a.sync()
    assert.ok(a.lastConflicts.some((c) => c.id === id && c.kind === 'out_of_scope'), 'the edit was pushed')
    await a.sync()
    assert.equal(await a.find('inspections', id), null, 'the site has left the device')
    const kept = await hq.api('GET', `/api/v1/conflicts?record_id=${id}&kind=out_of_scope`)
    assert.equal(kept.body[0].device_value.notes, 'written before the news of the revoke')
  },

  async grantedSiteArrivesInPages () {
    // A site granted later reaches a device in pages of at most its page size, whole.
    const small = new Device('p9', ANA_TOKEN); small.pageSize = 3
    await small.sync()
    const hq = new Device('hq9', HQ_TOKEN)
    const grant = await hq.api('POST', '/api/v1/assignments', { user_id: ANA_ID, site_id: OTHER_SITE_ID })
    assert.equal(grant.status, 201, JSON.stringify(grant.body))
    const big = new Device('w9', ANA_TOKEN)
    await big.sync()
    const there = async (dev, table) => (await data(dev, table)).filter((r) => r.site_id === OTHER_SITE_ID || r.id === OTHER_SITE_ID)
    assert.ok((await there(big, 'occurrences')).length > 3, 'the site has more records than a page holds')
    small.pages = 0; small.largestPage = 0
    await small.sync()
    assert.ok(small.pages > 1, `paged (${small.pages} pages)`)
    assert.ok(small.largestPage <= 3, `no page holds more than 3 records (${small.largestPage})`)
    for (const table of ['sites', 'occurrences', 'inspections']) {
      assert.deepEqual(await there(small, table), await there(big, table), `${table} at the granted site`)
    }
    await assertConverged(small, big)
  },
}

;(async () => {
  const only = process.argv.slice(2)
  const results = {}
  for (const [name, fn] of Object.entries(scenarios)) {
    if (only.length && !only.includes(name)) continue
    try { await fn(); results[name] = 'ok' } catch (e) { results[name] = `FAILED: ${e.stack || e}` }
  }
  console.log('RESULTS ' + JSON.stringify(results))
  process.exit(Object.values(results).every((r) => r === 'ok') ? 0 : 1)
})()
