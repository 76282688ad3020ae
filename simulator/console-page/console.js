// The stand-in's web console: loads devices, firmware and tasks from the console API, then follows
// the push channel (/api/events) and redraws what changed. Every value is put into the page as text
// (textContent, text nodes, properties), never as markup: device names and result messages come from devices.
(function () {
  'use strict';

  const STRINGS = window.CONSOLE_STRINGS;
  const LANGUAGE_KEY = 'iot-hub-console.language';
  const TABS = ['devices', 'firmware', 'updates', 'history', 'faults'];
  const FINAL_STATES = ['done', 'fail', 'timeout', 'cancelled'];
  /** How far back the download rate looks. */
  const RATE_WINDOW_MS = 10000;

  const state = {
    /** By "productId/deviceName": what GET /api/devices lists. */
    devices: new Map(),
    /** By "productId/version": the firmware records (served statistics as totals). */
    firmware: new Map(),
    /** By taskId. */
    tasks: new Map(),
    /** By device key: recent (time, percent) of its download, for the rate. */
    progressSamples: new Map(),
    /** The device whose history is shown, its entries, and the firmware requests of its tasks. */
    history: { key: '', entries: [] },
  };
  const dirty = new Set();
  let renderTimer;
  let language = chooseLanguage();

  // ---- text --------------------------------------------------------------------------------------

  function chooseLanguage() {
    let stored;
    try {
      stored = window.localStorage.getItem(LANGUAGE_KEY);
    } catch {
      stored = undefined;
    }
    if (stored && STRINGS[stored]) return stored;
    // The server set it from Accept-Language.
    const negotiated = document.documentElement.lang;
    if (STRINGS[negotiated]) return negotiated;
    const preferred = (navigator.languages || [navigator.language]).find((tag) => /^(en|zh)\b/i.test(tag || ''));
    return preferred && /^zh/i.test(preferred) ? 'zh-CN' : 'en';
  }

  function t(key, values) {
    const table = STRINGS[language] || STRINGS.en;
    const text = table[key] ?? STRINGS.en[key] ?? key;
    if (!values) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  function formatBytes(bytes) {
    if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return t('none');
    if (bytes < 1024) return `${bytes} B`;
    const units = ['KiB', 'MiB', 'GiB'];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${Number(value.toFixed(value < 10 ? 2 : 1))} ${units[unit]}`;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString(language);
  }

  function formatClock(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return `${date.toLocaleTimeString(language, { hour12: false })}.${String(date.getMilliseconds()).padStart(3, '0')}`;
  }

  function describeFaults(faults) {
    const parts = [];
    if (!faults) return t('faults.none');
    if (faults.throttleBytesPerSecond !== undefined) parts.push(t('fault.throttle', { rate: formatBytes(faults.throttleBytesPerSecond) }));
    if (faults.closeAfterBytes !== undefined) parts.push(t('fault.closeAfter', { bytes: faults.closeAfterBytes, responses: faults.closeAfterResponses ?? 1 }));
    if (faults.stallAfterBytes !== undefined) parts.push(t('fault.stallAfter', { bytes: faults.stallAfterBytes }));
    if (faults.ignoreRange) parts.push(t('fault.ignoreRange'));
    return parts.length > 0 ? parts.join(', ') : t('faults.none');
  }

  // ---- DOM ---------------------------------------------------------------------------------------

  /**
   * An element with properties and children. Strings become text nodes; `text` sets textContent;
   * `on<event>` adds a listener; other string values are attributes, other values properties.
   */
  function h(tag, properties, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(properties || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') element.className = value;
      else if (name === 'text') element.textContent = String(value);
      else if (name === 'dataset') Object.assign(element.dataset, value);
      else if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
      else if (typeof value === 'string') element.setAttribute(name, value);
      else element[name] = value;
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      element.append(child instanceof Node ? child : String(child));
    }
    return element;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function showResult(element, ...content) {
    element.replaceChildren(...content);
    element.hidden = content.length === 0;
  }

  function showNotice(text) {
    const notice = byId('notice');
    notice.textContent = text;
    notice.hidden = !text;
  }

  function showError(error) {
    showNotice(t('error.request', { error: error && error.message ? error.message : String(error) }));
  }

  /** Replaces a select's options when they differ, keeping the chosen value when it is still there. */
  function setOptions(select, options, placeholder) {
    const wanted = (placeholder ? [{ value: '', label: placeholder }] : []).concat(options);
    const signature = JSON.stringify(wanted);
    if (select.dataset.signature === signature) return;
    const chosen = select.value;
    select.replaceChildren(...wanted.map((option) => h('option', { value: option.value, text: option.label })));
    select.dataset.signature = signature;
    if (wanted.some((option) => option.value === chosen)) select.value = chosen;
  }

  /** Replaces a list of checkboxes when they differ, keeping what was checked. */
  function setChoices(container, name, choices) {
    const signature = JSON.stringify(choices);
    if (container.dataset.signature === signature) return;
    const checked = new Set([...container.querySelectorAll('input:checked')].map((input) => input.value));
    container.replaceChildren(
      ...choices.map((choice) =>
        h(
          'label',
          { class: 'choice' },
          h('input', { type: 'checkbox', name, value: choice.value, checked: checked.has(choice.value) }),
          h('span', { text: choice.label }),
        ),
      ),
    );
    container.dataset.signature = signature;
  }

  // ---- console API ---------------------------------------------------------------------------------

  async function api(method, path, body) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers['Content-Type'] = 'application/json';
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch {
      throw new Error(t('error.network'));
    }
    const text = await response.text();
    let parsed;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!response.ok) throw new Error(parsed && parsed.error ? parsed.error : `HTTP ${response.status}`);
    return parsed;
  }

  function path(...segments) {
    return `/api/${segments.map(encodeURIComponent).join('/')}`;
  }

  function uploadFirmware(productId, version, file, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open('POST', `/api/firmware?productId=${encodeURIComponent(productId)}&version=${encodeURIComponent(version)}`);
      request.setRequestHeader('Content-Type', 'application/octet-stream');
      request.upload.addEventListener('progress', (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      request.addEventListener('load', () => {
        let body;
        try {
          body = JSON.parse(request.responseText);
        } catch {
          body = undefined;
        }
        if (request.status === 201) resolve(body);
        else reject(new Error(body && body.error ? body.error : `HTTP ${request.status}`));
      });
      request.addEventListener('error', () => reject(new Error(t('error.network'))));
      request.send(file);
    });
  }

  // ---- state -------------------------------------------------------------------------------------

  function keyOf(productId, name) {
    return `${productId}/${name}`;
  }

  function markDirty(...parts) {
    for (const part of parts) dirty.add(part);
    if (renderTimer === undefined) renderTimer = setTimeout(render, 30);
  }

  function summaryOfFirmware(record) {
    return { ...record, served: { totalBytes: record.served.totalBytes, requestCount: record.served.requestCount } };
  }

  /** Loads running now; events that arrive meanwhile wait in `held`, then apply over what was loaded. */
  let loads = 0;
  const held = [];

  async function loadAll() {
    loads += 1;
    try {
      const [devices, firmware, tasks] = await Promise.all([api('GET', '/api/devices'), api('GET', '/api/firmware'), api('GET', '/api/tasks')]);
      state.devices = new Map(devices.map((device) => [keyOf(device.productId, device.deviceName), device]));
      state.firmware = new Map(firmware.map((record) => [keyOf(record.productId, record.version), summaryOfFirmware(record)]));
      state.tasks = new Map(tasks.map((task) => [task.taskId, task]));
      markDirty('devices', 'firmware', 'tasks');
    } finally {
      loads -= 1;
      if (loads === 0) for (const apply of held.splice(0)) apply();
    }
    if (state.history.key) await loadHistory(state.history.key);
  }

  /** The device's status in the latest task that targets it, as the cloud keeps it. */
  function currentUpdate(device) {
    let found;
    for (const task of state.tasks.values()) {
      if (task.productId !== device.productId) continue;
      const status = task.devices.find((entry) => entry.deviceName === device.deviceName);
      if (status && (!found || Number(task.taskId) > Number(found.task.taskId))) found = { task, status };
    }
    return found;
  }

  function noteProgress(key, status) {
    if (status.state !== 'downloading' || typeof status.percent !== 'number') {
      state.progressSamples.delete(key);
      return;
    }
    const time = Date.parse(status.updatedAt);
    const samples = (state.progressSamples.get(key) || []).filter((sample) => time - sample.time <= RATE_WINDOW_MS && sample.percent <= status.percent);
    samples.push({ time, percent: status.percent });
    state.progressSamples.set(key, samples);
  }

  /** Bytes per second over the recent progress reports of the download, if there are two. */
  function downloadRate(key, update) {
    const samples = state.progressSamples.get(key);
    if (!update || update.status.state !== 'downloading' || !samples || samples.length < 2) return undefined;
    const first = samples[0];
    const last = samples[samples.length - 1];
    const seconds = (last.time - first.time) / 1000;
    if (seconds <= 0) return undefined;
    return (((last.percent - first.percent) / 100) * update.task.file_size) / seconds;
  }

  // ---- push channel --------------------------------------------------------------------------------

  function setConnection(connection) {
    const element = byId('connection');
    element.dataset.state = connection;
    element.textContent = t(`connection.${connection}`);
  }

  function followEvents() {
    const source = new EventSource('/api/events');
    // After every (re)connect: what happened while the channel was down is in the API's answers.
    source.addEventListener('open', () => {
      setConnection('live');
      loadAll().catch(showError);
    });
    source.addEventListener('error', () => setConnection('reconnecting'));
    const on = (name, handle) =>
      source.addEventListener(name, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        if (loads > 0) held.push(() => handle(data));
        else handle(data);
      });

    on('device', (data) => {
      const device = state.devices.get(keyOf(data.productId, data.deviceName));
      if (device) device.online = data.online;
      else loadAll().catch(showError);
      markDirty('devices');
    });
    on('device-created', (data) => {
      const key = keyOf(data.productId, data.deviceName);
      if (!state.devices.has(key)) state.devices.set(key, { ...data, online: false, connectCount: 0, version: null });
      markDirty('devices');
    });
    on('device-removed', (data) => {
      state.devices.delete(keyOf(data.productId, data.deviceName));
      markDirty('devices');
    });
    on('report', (data) => {
      const key = keyOf(data.productId, data.deviceName);
      const device = state.devices.get(key);
      if (device && data.entry.type === 'report_version') device.version = data.entry.version;
      if (state.history.key === key) {
        state.history.entries.push({ kind: 'report', time: data.entry.time, entry: data.entry });
        markDirty('history');
      }
      markDirty('devices');
    });
    on('task', (task) => {
      state.tasks.set(task.taskId, task);
      markDirty('tasks', 'devices');
    });
    on('status', (data) => {
      const task = state.tasks.get(data.taskId);
      if (!task) {
        loadAll().catch(showError);
        return;
      }
      const index = task.devices.findIndex((entry) => entry.deviceName === data.status.deviceName);
      if (index >= 0) task.devices[index] = data.status;
      else task.devices.push(data.status);
      noteProgress(keyOf(data.productId, data.deviceName), data.status);
      markDirty('tasks', 'devices');
    });
    on('firmware', (record) => {
      state.firmware.set(keyOf(record.productId, record.version), record);
      markDirty('firmware');
    });
    on('firmware-removed', (data) => {
      state.firmware.delete(keyOf(data.productId, data.version));
      markDirty('firmware');
    });
    on('served', (data) => {
      const record = state.firmware.get(keyOf(data.productId, data.version));
      if (record) record.served = { totalBytes: data.totalBytes, requestCount: data.requestCount };
      if (state.history.key && requestBelongsToHistory(data.productId, data.version, data.request)) {
        state.history.entries.push({ kind: 'request', time: data.request.time, version: data.version, request: data.request });
        markDirty('history');
      }
      markDirty('firmware');
    });
  }

  // ---- rendering ----------------------------------------------------------------------------------

  function render() {
    renderTimer = undefined;
    const parts = new Set(dirty);
    dirty.clear();
    if (parts.has('devices') || parts.has('tasks')) renderDevices();
    if (parts.has('firmware')) renderFirmware();
    if (parts.has('tasks')) renderTasks();
    if (parts.has('devices') || parts.has('firmware') || parts.has('tasks')) {
      renderUpdateForm();
      renderHistoryChoice();
      renderFaultsForm();
      renderKnownProducts();
    }
    if (parts.has('history')) renderHistory();
  }

  function stateLabel(status) {
    if (!status) return t('state.none');
    if (status.state === 'downloading' && typeof status.percent === 'number') return `${t('state.downloading')} ${status.percent} %`;
    return t(`state.${status.state}`);
  }

  function progressValue(status) {
    if (!status) return 0;
    if (status.state === 'downloading') return status.percent ?? 0;
    return status.state === 'burning' || status.state === 'done' ? 100 : 0;
  }

  function progressBar(status) {
    return h('progress', { max: 100, value: progressValue(status), dataset: { state: status ? status.state : 'none' } });
  }

  function emptyRow(columns, text) {
    return h('tr', { class: 'empty' }, h('td', { colSpan: columns, text }));
  }

  function sortedDevices(productId) {
    return [...state.devices.values()]
      .filter((device) => productId === undefined || device.productId === productId)
      .sort((a, b) => a.productId.localeCompare(b.productId) || a.deviceName.localeCompare(b.deviceName));
  }

  function renderDevices() {
    const rows = sortedDevices().map((device) => {
      const key = keyOf(device.productId, device.deviceName);
      const update = currentUpdate(device);
      const status = update && update.status;
      const rate = downloadRate(key, update);
      return h(
        'tr',
        { dataset: { device: key } },
        h('td', { text: device.productId }),
        h('td', { class: 'device-name', text: device.deviceName }),
        h('td', { text: t(`type.${device.deviceType}`) }),
        h('td', {}, h('span', { class: `online ${device.online ? 'is-online' : 'is-offline'}`, text: device.online ? t('online') : t('offline') })),
        h('td', { class: 'version', text: device.version ?? t('none') }),
        h(
          'td',
          { class: 'ota-state', dataset: { state: status ? status.state : 'none' } },
          h('span', { class: 'state-label', text: stateLabel(status) }),
          update ? h('small', { text: ` ${t('devices.towards', { version: update.task.version, task: update.task.taskId })}` }) : null,
        ),
        h('td', { class: 'progress' }, progressBar(status)),
        h('td', { class: 'percent', text: status ? `${progressValue(status)} %` : '' }),
        h('td', { class: 'rate', text: rate === undefined ? '' : t('rate.perSecond', { size: formatBytes(Math.round(rate)) }) }),
        h('td', { class: 'result-code', text: status && status.result_code !== undefined ? status.result_code : '' }),
        h('td', { class: 'result-msg', text: status && status.result_msg ? status.result_msg : '' }),
        h('td', {}, h('button', { type: 'button', class: 'small', onclick: () => openHistory(key), text: t('devices.history') })),
      );
    });
    byId('devices-table').tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [emptyRow(12, t('devices.empty'))]));
  }

  function renderFirmware() {
    const records = [...state.firmware.values()].sort(
      (a, b) => a.productId.localeCompare(b.productId) || a.version.localeCompare(b.version, undefined, { numeric: true }),
    );
    const rows = records.map((record) =>
      h(
        'tr',
        { dataset: { firmware: keyOf(record.productId, record.version) } },
        h('td', { text: record.productId }),
        h('td', { text: record.version }),
        h('td', { class: 'size', text: `${formatBytes(record.file_size)} (${record.file_size})` }),
        h('td', {}, h('code', { class: 'md5', text: record.md5sum })),
        h('td', { text: formatTime(record.uploadedAt) }),
        h('td', { class: 'served', text: t('firmware.servedSummary', { requests: record.served.requestCount, size: formatBytes(record.served.totalBytes) }) }),
        h('td', { class: 'faults', text: describeFaults(record.faults) }),
        h(
          'td',
          { class: 'actions' },
          h('button', { type: 'button', class: 'small', onclick: () => openFaults(record), text: t('firmware.faultsButton') }),
          h('button', { type: 'button', class: 'small danger', onclick: () => deleteFirmware(record), text: t('firmware.delete') }),
        ),
      ),
    );
    byId('firmware-table').tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [emptyRow(8, t('firmware.empty'))]));
  }

  function renderTasks() {
    const tasks = [...state.tasks.values()].sort((a, b) => Number(b.taskId) - Number(a.taskId));
    const articles = tasks.map((task) => {
      const counts = { done: 0, failed: 0, open: 0 };
      for (const status of task.devices) {
        if (status.state === 'done') counts.done += 1;
        else if (status.state === 'fail' || status.state === 'timeout') counts.failed += 1;
        else if (!FINAL_STATES.includes(status.state)) counts.open += 1;
      }
      const scope = [];
      if (task.sourceVersions) scope.push(t('task.sourceVersions', { versions: task.sourceVersions.join(', ') }));
      if (task.deviceNames) scope.push(t('task.deviceNames', { names: task.deviceNames.join(', ') }));
      const rows = task.devices.map((status) =>
        h(
          'tr',
          { dataset: { device: status.deviceName } },
          h('td', { class: 'device-name', text: status.deviceName }),
          h('td', { text: status.fromVersion ?? t('none') }),
          h('td', { class: 'ota-state', dataset: { state: status.state } }, h('span', { class: 'state-label', text: stateLabel(status) })),
          h('td', { class: 'progress' }, progressBar(status)),
          h('td', { class: 'result-code', text: status.result_code ?? '' }),
          h('td', { class: 'result-msg', text: status.result_msg ?? '' }),
          h('td', { text: status.deliveries }),
          h('td', { text: formatTime(status.updatedAt) }),
        ),
      );
      return h(
        'article',
        { class: 'task card', dataset: { task: task.taskId } },
        h('h3', { text: t('task.title', { task: task.taskId, product: task.productId, version: task.version }) }),
        h('p', {
          class: 'hint',
          text: [
            t('task.meta', { mode: t(`mode.${task.mode}`), time: formatTime(task.createdAt), timeout: task.timeoutSeconds, scheme: task.urlScheme.toUpperCase() }),
            ...scope,
          ].join(' · '),
        }),
        h('p', { class: 'counts', text: t('task.counts', { ...counts, total: task.devices.length }) }),
        h(
          'table',
          { class: 'grid task-devices' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['col.device', 'col.fromVersion', 'col.state', 'col.progress', 'col.resultCode', 'col.resultMsg', 'col.deliveries', 'col.updatedAt'].map((key) =>
                h('th', { text: t(key) }),
              ),
            ),
          ),
          h('tbody', {}, rows.length > 0 ? rows : emptyRow(8, t('task.noDevices'))),
        ),
      );
    });
    byId('tasks').replaceChildren(...(articles.length > 0 ? articles : [h('p', { class: 'hint', text: t('updates.noTasks') })]));
  }

  function products() {
    const names = new Set();
    for (const device of state.devices.values()) names.add(device.productId);
    for (const record of state.firmware.values()) names.add(record.productId);
    return [...names].sort();
  }

  function renderKnownProducts() {
    setOptions(
      byId('known-products'),
      products().map((name) => ({ value: name, label: name })),
    );
  }

  function updateMode() {
    const checked = document.querySelector('input[name="update-mode"]:checked');
    return checked ? checked.value : 'source-versions';
  }

  function renderUpdateForm() {
    const productSelect = byId('update-product');
    setOptions(
      productSelect,
      products().map((name) => ({ value: name, label: name })),
    );
    const productId = productSelect.value;
    const versions = [...state.firmware.values()]
      .filter((record) => record.productId === productId)
      .map((record) => record.version)
      .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
    setOptions(
      byId('update-version'),
      versions.map((version) => ({ value: version, label: version })),
    );
    const devices = sortedDevices(productId);
    const reported = [...new Set(devices.map((device) => device.version).filter((version) => version))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const versionChoices = byId('update-source-versions').querySelector('.choices');
    if (reported.length > 0) {
      setChoices(
        versionChoices,
        'source-version',
        reported.map((version) => ({ value: version, label: version })),
      );
    } else {
      versionChoices.dataset.signature = '';
      versionChoices.replaceChildren(h('span', { class: 'hint', text: t('updates.noVersions') }));
    }
    const deviceChoices = byId('update-devices').querySelector('.choices');
    if (devices.length > 0) {
      setChoices(
        deviceChoices,
        'update-device',
        devices.map((device) => ({
          value: device.deviceName,
          label: `${device.deviceName} (${device.version ?? t('none')}, ${device.online ? t('online') : t('offline')})`,
        })),
      );
    } else {
      deviceChoices.dataset.signature = '';
      deviceChoices.replaceChildren(h('span', { class: 'hint', text: t('updates.noDevices') }));
    }
    const mode = updateMode();
    byId('update-source-versions').hidden = mode === 'devices';
    byId('update-devices').hidden = mode !== 'devices-on-source-versions';
    byId('update-names-field').hidden = mode !== 'devices';
  }

  function renderHistoryChoice() {
    setOptions(
      byId('history-device'),
      sortedDevices().map((device) => ({ value: keyOf(device.productId, device.deviceName), label: `${device.productId} / ${device.deviceName}` })),
      t('history.choose'),
    );
  }

  function renderFaultsForm() {
    const select = byId('faults-firmware');
    const records = [...state.firmware.values()].sort(
      (a, b) => a.productId.localeCompare(b.productId) || a.version.localeCompare(b.version, undefined, { numeric: true }),
    );
    setOptions(
      select,
      records.map((record) => ({ value: keyOf(record.productId, record.version), label: `${record.productId} / ${record.version}` })),
      records.length > 0 ? t('faults.choose') : t('faults.empty'),
    );
    const record = state.firmware.get(select.value);
    byId('faults-current').textContent = record ? t('faults.current', { faults: describeFaults(record.faults) }) : '';
  }

  function describeReport(entry) {
    if (entry.type === 'invalid') return t('history.invalid', { error: entry.error ?? '' });
    if (entry.type === 'report_version') return `report_version ${entry.version}`;
    let text = `report_progress ${entry.version}: ${t(`state.${entry.state}`)}`;
    if (entry.state === 'downloading') text += ` ${entry.percent} %`;
    if (entry.state === 'fail') text += ` ${entry.result_code}: ${entry.result_msg ?? ''}`;
    return text;
  }

  function renderHistory() {
    const entries = [...state.history.entries].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    const rows = entries.map((item) => {
      if (item.kind === 'report') {
        const entry = item.entry;
        const details = [h('span', { class: 'what', text: describeReport(entry) }), ' ', h('span', { class: 'badge qos', text: t('history.qos', { qos: entry.qos }) })];
        if (entry.note) details.push(' ', h('span', { class: 'hint', text: entry.note }));
        if (entry.via) details.push(' ', h('span', { class: 'hint', text: t('history.via', { gateway: keyOf(entry.via.productId, entry.via.deviceName) }) }));
        if (entry.payload) details.push(' ', h('code', { text: entry.payload }));
        return h(
          'tr',
          { class: 'report', dataset: { kind: 'report', type: entry.type, state: entry.state ?? '' } },
          h('td', { class: 'time', title: item.time, text: formatClock(item.time) }),
          h('td', {}, h('span', { class: 'badge report', text: t('history.report') })),
          h('td', {}, details),
        );
      }
      const request = item.request;
      const details = [
        h('span', {
          class: 'what',
          text: t('history.requestText', {
            method: request.method,
            version: item.version,
            range: request.range ? `Range: ${request.range}` : t('history.wholeFile'),
            status: request.status,
            size: `${formatBytes(request.bytes)} (${request.bytes} B)`,
          }),
        }),
        ' ',
        h('span', { class: 'badge', text: request.scheme.toUpperCase() }),
      ];
      if (request.fault) details.push(' ', h('span', { class: 'badge fault', text: t(`history.fault.${request.fault}`) }));
      return h(
        'tr',
        { class: 'request', dataset: { kind: 'request', status: String(request.status) } },
        h('td', { class: 'time', title: item.time, text: formatClock(item.time) }),
        h('td', {}, h('span', { class: 'badge request', text: t('history.request') })),
        h('td', {}, details),
      );
    });
    const empty = state.history.key ? t('history.empty') : t('history.choose');
    byId('timeline').tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [emptyRow(3, empty)]));
  }

  function applyStrings() {
    document.documentElement.lang = language;
    document.title = t('title');
    for (const element of document.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n);
    byId('language').value = language;
    setConnection(byId('connection').dataset.state);
    // Options that carry translated text are made again.
    for (const element of document.querySelectorAll('select, .choices')) delete element.dataset.signature;
    markDirty('devices', 'firmware', 'tasks', 'history');
  }

  // ---- history -------------------------------------------------------------------------------------

  /** The periods the device's tasks ran, per firmware: from the task's start to the device's final status. */
  function updateWindows(productId, deviceName) {
    const windows = [];
    for (const task of state.tasks.values()) {
      if (task.productId !== productId) continue;
      const status = task.devices.find((entry) => entry.deviceName === deviceName);
      if (!status) continue;
      const end = FINAL_STATES.includes(status.state) ? Date.parse(status.updatedAt) + 1000 : Infinity;
      windows.push({ version: task.version, start: Date.parse(task.createdAt), end });
    }
    return windows;
  }

  function requestBelongsToHistory(productId, version, request) {
    const [historyProduct, ...rest] = state.history.key.split('/');
    if (historyProduct !== productId) return false;
    const time = Date.parse(request.time);
    return updateWindows(productId, rest.join('/')).some((window) => window.version === version && time >= window.start && time <= window.end);
  }

  async function loadHistory(key) {
    const device = state.devices.get(key);
    if (!device) return;
    const view = await api('GET', path('devices', device.productId, device.deviceName));
    const entries = view.ota.history.map((entry) => ({ kind: 'report', time: entry.time, entry }));
    const windows = updateWindows(device.productId, device.deviceName);
    for (const version of new Set(windows.map((window) => window.version))) {
      let record;
      try {
        record = await api('GET', path('firmware', device.productId, version));
      } catch {
        continue;
      }
      for (const request of record.served.requests) {
        const time = Date.parse(request.time);
        if (windows.some((window) => window.version === version && time >= window.start && time <= window.end)) {
          entries.push({ kind: 'request', time: request.time, version, request });
        }
      }
    }
    if (state.history.key !== key) return;
    state.history.entries = entries;
    markDirty('history');
  }

  function openHistory(key) {
    byId('history-device').value = key;
    selectHistory(key);
    showTab('history');
  }

  function selectHistory(key) {
    state.history = { key, entries: [] };
    markDirty('history');
    if (key) loadHistory(key).catch(showError);
  }

  // ---- actions -------------------------------------------------------------------------------------

  async function createDevice(event) {
    event.preventDefault();
    const productId = byId('device-product').value.trim();
    const deviceName = byId('device-name').value.trim();
    const body = { productId, deviceName, authMode: byId('device-auth').value };
    if (byId('device-type').value === 'gateway') body.deviceType = 'gateway';
    const result = byId('device-created');
    try {
      const info = await api('POST', '/api/devices', body);
      const previous = result.querySelector('a');
      if (previous) URL.revokeObjectURL(previous.href);
      const file = new Blob([`${JSON.stringify(info, null, 2)}\n`], { type: 'application/json' });
      showResult(
        result,
        t('devices.created', { device: keyOf(productId, deviceName) }),
        ' ',
        h('a', { id: 'device-info-download', href: URL.createObjectURL(file), download: 'device_info.json', text: t('devices.downloadInfo') }),
      );
      byId('device-name').value = '';
      showNotice('');
    } catch (error) {
      showResult(result);
      showError(error);
    }
  }

  let chosenFile;

  function chooseFile(file) {
    chosenFile = file;
    byId('firmware-chosen').textContent = file ? t('firmware.chosen', { name: file.name, size: `${formatBytes(file.size)} (${file.size} B)` }) : '';
  }

  async function uploadChosenFirmware(event) {
    event.preventDefault();
    const productId = byId('firmware-product').value.trim();
    const version = byId('firmware-version').value.trim();
    const result = byId('firmware-result');
    if (!chosenFile) {
      showResult(result, t('firmware.needFile'));
      return;
    }
    const progress = byId('firmware-upload-progress');
    progress.value = 0;
    progress.hidden = false;
    byId('firmware-upload').disabled = true;
    showResult(result, t('firmware.uploading', { percent: 0 }));
    try {
      const uploaded = await uploadFirmware(productId, version, chosenFile, (fraction) => {
        progress.value = Math.round(fraction * 100);
        showResult(result, t('firmware.uploading', { percent: Math.round(fraction * 100) }));
      });
      showResult(
        result,
        t('firmware.uploaded', { product: uploaded.productId, version: uploaded.version, size: formatBytes(uploaded.file_size), bytes: uploaded.file_size }),
        ' ',
        h('code', { id: 'firmware-uploaded-md5', text: uploaded.md5sum }),
      );
      showNotice('');
    } catch (error) {
      showResult(result);
      showError(error);
    } finally {
      progress.hidden = true;
      byId('firmware-upload').disabled = false;
    }
  }

  async function deleteFirmware(record) {
    if (!window.confirm(t('firmware.confirmDelete', { product: record.productId, version: record.version }))) return;
    try {
      await api('DELETE', path('firmware', record.productId, record.version));
      state.firmware.delete(keyOf(record.productId, record.version));
      showNotice('');
      showResult(byId('firmware-result'), t('firmware.deleted', { product: record.productId, version: record.version }));
      markDirty('firmware');
    } catch (error) {
      showError(error);
    }
  }

  function checkedValues(container) {
    return [...container.querySelectorAll('input:checked')].map((input) => input.value);
  }

  async function startUpdate(event) {
    event.preventDefault();
    const result = byId('update-result');
    const productId = byId('update-product').value;
    const version = byId('update-version').value;
    if (!productId || !version) return showResult(result, t('updates.needProduct'));
    const body = { productId, version, timeoutSeconds: Number(byId('update-timeout').value) || 900, urlScheme: byId('update-scheme').value };
    const mode = updateMode();
    if (mode === 'devices') {
      const names = byId('update-names')
        .value.split(/[\s,]+/)
        .filter((name) => name !== '');
      if (names.length === 0) return showResult(result, t('updates.needNames'));
      body.deviceNames = names;
    } else {
      const sourceVersions = checkedValues(byId('update-source-versions'));
      if (sourceVersions.length === 0) return showResult(result, t('updates.needSourceVersion'));
      body.sourceVersions = sourceVersions;
      if (mode === 'devices-on-source-versions') {
        const devices = checkedValues(byId('update-devices'));
        if (devices.length === 0) return showResult(result, t('updates.needDevice'));
        body.deviceNames = devices;
      }
    }
    try {
      const task = await api('POST', '/api/updates', body);
      // The push channel may have told newer statuses of it already.
      if (!state.tasks.has(task.taskId)) state.tasks.set(task.taskId, task);
      showResult(result, t('updates.started', { task: task.taskId, count: task.devices.length }));
      showNotice('');
      markDirty('tasks', 'devices');
    } catch (error) {
      showResult(result);
      showError(error);
    }
  }

  function fillFaults(record) {
    const faults = (record && record.faults) || {};
    byId('fault-throttle').value = faults.throttleBytesPerSecond ?? '';
    byId('fault-close-after').value = faults.closeAfterBytes ?? '';
    byId('fault-close-responses').value = faults.closeAfterBytes !== undefined ? (faults.closeAfterResponses ?? 1) : '';
    byId('fault-stall-after').value = faults.stallAfterBytes ?? '';
    byId('fault-ignore-range').checked = faults.ignoreRange === true;
  }

  function openFaults(record) {
    renderFaultsForm();
    byId('faults-firmware').value = keyOf(record.productId, record.version);
    fillFaults(record);
    renderFaultsForm();
    showResult(byId('faults-result'));
    showTab('faults');
  }

  async function putFaults(faults) {
    const record = state.firmware.get(byId('faults-firmware').value);
    const result = byId('faults-result');
    if (!record) return showResult(result, t('faults.choose'));
    try {
      // The table follows the push channel, which tells this change and any later one (a one-shot knob used up).
      const updated = await api('PUT', path('firmware', record.productId, record.version, 'faults'), faults);
      fillFaults(updated);
      showResult(result, t('faults.applied', { product: updated.productId, version: updated.version, faults: describeFaults(updated.faults) }));
      showNotice('');
      markDirty('firmware');
    } catch (error) {
      showResult(result);
      showError(error);
    }
  }

  function applyFaults(event) {
    event.preventDefault();
    const faults = {};
    const count = (id, field) => {
      const text = byId(id).value.trim();
      if (text !== '') faults[field] = Number(text);
    };
    count('fault-throttle', 'throttleBytesPerSecond');
    count('fault-close-after', 'closeAfterBytes');
    if (faults.closeAfterBytes !== undefined) count('fault-close-responses', 'closeAfterResponses');
    count('fault-stall-after', 'stallAfterBytes');
    if (byId('fault-ignore-range').checked) faults.ignoreRange = true;
    return putFaults(faults);
  }

  // ---- tabs and start-up ----------------------------------------------------------------------------

  function showTab(name) {
    const tab = TABS.includes(name) ? name : 'devices';
    for (const button of document.querySelectorAll('[data-tab]')) button.setAttribute('aria-selected', String(button.dataset.tab === tab));
    for (const panel of TABS) byId(`panel-${panel}`).hidden = panel !== tab;
    if (window.location.hash !== `#${tab}`) window.history.replaceState(null, '', `#${tab}`);
  }

  function start() {
    for (const button of document.querySelectorAll('[data-tab]')) button.addEventListener('click', () => showTab(button.dataset.tab));
    byId('language').addEventListener('change', (event) => {
      language = STRINGS[event.target.value] ? event.target.value : 'en';
      try {
        window.localStorage.setItem(LANGUAGE_KEY, language);
      } catch {
        // The choice lasts for this page only.
      }
      applyStrings();
    });
    byId('device-form').addEventListener('submit', createDevice);
    byId('firmware-form').addEventListener('submit', uploadChosenFirmware);
    byId('firmware-file').addEventListener('change', (event) => chooseFile(event.target.files[0]));
    const drop = byId('firmware-drop');
    drop.addEventListener('dragover', (event) => {
      event.preventDefault();
      drop.classList.add('dragging');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
    drop.addEventListener('drop', (event) => {
      event.preventDefault();
      drop.classList.remove('dragging');
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) chooseFile(file);
    });
    byId('update-form').addEventListener('submit', startUpdate);
    byId('update-product').addEventListener('change', renderUpdateForm);
    for (const radio of document.querySelectorAll('input[name="update-mode"]')) radio.addEventListener('change', renderUpdateForm);
    byId('history-device').addEventListener('change', (event) => selectHistory(event.target.value));
    byId('faults-firmware').addEventListener('change', () => {
      fillFaults(state.firmware.get(byId('faults-firmware').value));
      renderFaultsForm();
      showResult(byId('faults-result'));
    });
    byId('faults-form').addEventListener('submit', applyFaults);
    byId('faults-clear').addEventListener('click', () => putFaults({}));

    applyStrings();
    setConnection('connecting');
    showTab(window.location.hash.slice(1));
    followEvents();
  }

  start();
})();
