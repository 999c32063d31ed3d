// The whittle plan report: reads the plan embedded in #plan-data (see html.rs for its shape)
// and renders the summary table. Rows are built a batch at a time as they scroll into view,
// and a role's evidence, policy diff and split proposal only when it is expanded, so that a
// plan of thousands of roles opens at once. Every text goes through textContent: nothing of the
// plan is ever parsed as HTML.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("plan-data").textContent);
  const plan = data.plan;
  const roles = data.roles;
  const BATCH = 200;

  // Small DOM helper: el("td", {className: "num"}, "text", child, ...).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === "dataset") Object.assign(node.dataset, value);
        else if (key in node) node[key] = value;
        else node.setAttribute(key, value);
      }
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const roleName = (arn) => arn.slice(arn.lastIndexOf("/") + 1);
  const flags = (role) => role.flags;
  // Groups and lists are JSON text in their tables (shared by many roles): parsed once, when
  // first needed.
  const parsed = new Map();
  function entry(table, i) {
    const key = table + i;
    if (!parsed.has(key)) parsed.set(key, JSON.parse(data[table][i]));
    return parsed.get(key);
  }
  const group = (i) => entry("groups", i);
  const texts = (i) => entry("lists", i).map((t) => data.text[t]);

  // The services a role is granted (kept or removed), computed the first time a service
  // filter needs them.
  function servicesOf(role) {
    if (!role._services) {
      role._services = new Set();
      for (const k of role.k) role._services.add(k[0]);
      for (const g of role.r) role._services.add(group(g)[0]);
    }
    return role._services;
  }

  const columns = [
    { key: "name", label: "role", value: (r) => roleName(r.arn) },
    { key: "account", label: "account", value: (r) => r.account },
    { key: "status", label: "status", value: (r) => r.status },
    { key: "granted", label: "granted", num: true, value: (r) => r.granted },
    { key: "used", label: "used", num: true, value: (r) => r.used },
    { key: "kept", label: "kept", num: true, value: (r) => r.kept },
    { key: "removed", label: "removed", num: true, value: (r) => r.removed },
    { key: "risky", label: "write / permissions removed", num: true, value: (r) => r.risky },
    { key: "bar", label: "granted · used · kept", value: null },
    { key: "flags", label: "to look at", num: true, value: flags },
  ];

  const state = { sort: null, dir: 1, account: "", risk: "", service: "", text: "", shown: 0, rows: [] };

  // ---- page frame -------------------------------------------------------------------------
  const app = document.getElementById("app");
  const changed = roles.filter((r) => r.status === "changes").length;
  app.append(
    el("h1", null, "whittle plan ", el("code", null, plan.id)),
    el("p", { className: "meta" },
      `${plan.created_at} · ${plan.status} · catalog ${plan.catalog} · look-back ${plan.lookback_days} days`),
  );
  const sum = (key) => roles.reduce((n, r) => n + r[key], 0);
  const card = (value, label) => el("div", { className: "card" }, el("b", null, value.toLocaleString("en")), label);
  app.append(el("div", { className: "cards" },
    card(roles.length, "roles"),
    card(changed, "would change"),
    card(roles.filter((r) => r.status === "not-shrunk").length, "not shrunk"),
    card(roles.filter((r) => r.status === "error").length, "errors"),
    card(sum("removed"), "actions removed"),
    card(sum("risky"), "write / permissions removed"),
  ));
  for (const account of plan.accounts || []) {
    if (account.error) {
      app.append(el("p", { className: "warn" },
        el("b", null, `Account ${account.account} not read`), `, its roles are not in this plan: ${account.error}`));
    }
  }

  // ---- filters ------------------------------------------------------------------------------
  function select(id, label, options) {
    const node = el("select", { id }, el("option", { value: "" }, "all"));
    for (const [value, text] of options) node.append(el("option", { value }, text));
    node.addEventListener("change", () => { state[id] = node.value; refresh(); });
    return el("label", null, label, node);
  }
  const accounts = [...new Set(roles.map((r) => r.account))].sort();
  const serviceOptions = data.services.map((s, i) => [String(i), s])
    .sort((a, b) => a[1].localeCompare(b[1]));
  const search = el("input", { id: "text", type: "search", placeholder: "role name or ARN" });
  search.addEventListener("input", () => { state.text = search.value.trim().toLowerCase(); refresh(); });
  const shown = el("span", { id: "shown" });
  app.append(el("div", { className: "filters" },
    select("account", "account", accounts.map((a) => [a, a])),
    select("risk", "risk", [
      ["risky", "removes Write / Permissions management"],
      ["flagged", "has risks or notes"],
      ["not-shrunk", "not shrunk or error"],
      ["none", "nothing to look at"],
      ["split", "one role per function proposed"],
    ]),
    select("service", "service", serviceOptions),
    el("label", null, "search", search),
    shown,
  ));
  app.append(el("p", { className: "legend muted" }, "bar:",
    el("span", { className: "b-used", style: "background: var(--used)" }), "used",
    el("span", { style: "background: var(--kept)" }), "kept without a call (keep-list, needed, …)",
    el("span", { style: "background: var(--removed)" }), "removed",
  ));

  // ---- table ----------------------------------------------------------------------------------
  const head = el("tr");
  for (const column of columns) {
    const th = el("th", { className: (column.num ? "num " : "") + (column.value ? "sortable" : "") }, column.label);
    th.dataset.key = column.key;
    if (column.value) th.addEventListener("click", () => sortBy(column, th));
    head.append(th);
  }
  const tbody = el("tbody");
  const table = el("table", { id: "roles" }, el("thead", null, head), tbody);
  const more = el("div", { id: "more" });
  app.append(table, more);

  function sortBy(column, th) {
    state.dir = state.sort === column ? -state.dir : column.num ? -1 : 1;
    state.sort = column;
    for (const other of head.children) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
    refresh();
  }

  function matches(role) {
    if (state.account && role.account !== state.account) return false;
    if (state.service && !servicesOf(role).has(Number(state.service))) return false;
    if (state.text && !role.arn.toLowerCase().includes(state.text)) return false;
    switch (state.risk) {
      case "risky": return role.risky > 0;
      case "flagged": return flags(role) > 0;
      case "not-shrunk": return role.status === "not-shrunk" || role.status === "error";
      case "none": return flags(role) === 0 && role.risky === 0;
      case "split": return Boolean(role.s);
      default: return true;
    }
  }

  function refresh() {
    let rows = roles.filter(matches);
    if (state.sort) {
      const value = state.sort.value;
      const dir = state.dir;
      rows = rows.map((role, i) => [value(role), i, role]);
      rows.sort((a, b) => (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] - b[1]));
      rows = rows.map((entry) => entry[2]);
    }
    state.rows = rows;
    state.shown = 0;
    tbody.replaceChildren();
    appendBatch();
  }

  function bar(role) {
    const node = el("div", { className: "bar" });
    node.title = `granted ${role.granted}, used ${role.used}, kept ${role.kept}, removed ${role.removed}`;
    const total = Math.max(role.granted, 1);
    const part = (cls, n) => {
      if (n > 0) node.append(el("span", { className: cls, style: `width: ${(100 * n) / total}%` }));
    };
    part("b-used", role.used);
    part("b-kept", role.kept - role.used);
    part("b-removed", role.removed);
    return node;
  }

  function row(role) {
    const tr = el("tr", { className: "role" });
    tr.dataset.arn = role.arn;
    const button = el("button", { className: "expand", title: role.arn }, roleName(role.arn));
    button.setAttribute("aria-expanded", "false");
    button.addEventListener("click", () => toggle(tr, role, button));
    const look = flags(role);
    tr.append(
      el("td", null, button),
      el("td", { className: "mono" }, role.account),
      el("td", null, el("span", { className: `status status-${role.status}` }, role.status),
        role.s ? el("span", { className: "split-badge", title: "one role per function proposed" },
          `split ×${role.s.f.length}`) : null),
      el("td", { className: "num" }, role.granted),
      el("td", { className: "num" }, role.used),
      el("td", { className: "num" }, role.kept),
      el("td", { className: "num" }, role.removed),
      el("td", { className: "num" + (role.risky ? " flag" : "") }, role.risky),
      el("td", null, bar(role)),
      el("td", { className: "num" + (look ? " flag" : "") }, look ? `${look} ⚠` : ""),
    );
    return tr;
  }

  // The next batch of rows; the rest follow when the end of the table scrolls into view.
  function appendBatch() {
    const end = Math.min(state.shown + BATCH, state.rows.length);
    const fragment = document.createDocumentFragment();
    for (let i = state.shown; i < end; i++) fragment.append(row(state.rows[i]));
    tbody.append(fragment);
    state.shown = end;
    shown.textContent = `${state.rows.length} of ${roles.length} role(s)`;
    more.textContent = state.shown < state.rows.length
      ? `showing ${state.shown} of ${state.rows.length}; scroll for more` : "";
  }
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.shown < state.rows.length) appendBatch();
  }).observe(more);

  // ---- a role's details, built on first expand -------------------------------------------------
  function toggle(tr, role, button) {
    let detail = tr.nextElementSibling;
    if (detail && detail.classList.contains("detail")) {
      detail.hidden = !detail.hidden;
    } else {
      detail = el("tr", { className: "detail" }, el("td", { colSpan: columns.length }, details(role)));
      tr.after(detail);
    }
    tr.classList.toggle("open", !detail.hidden);
    button.setAttribute("aria-expanded", String(!detail.hidden));
  }

  function details(role) {
    const box = el("div", { className: "detail" });
    box.append(el("h3", null, role.arn));
    const status = {
      "changes": `${role.kept} action(s) kept, ${role.removed} removed`,
      "no-change": `no change: all ${role.kept} granted action(s) are kept`,
      "not-shrunk": `not shrunk (would keep ${role.kept}, remove ${role.removed}; observed ${role.observed_days} day(s))`,
      "error": `error: ${role.error}`,
    }[role.status] || role.status;
    box.append(el("p", null, el("b", null, status)));
    const risks = texts(role.risks);
    const notes = texts(role.notes);
    if (risks.length || notes.length) {
      const list = el("ul", { className: "risks" });
      for (const risk of risks) list.append(el("li", { className: "flag" }, "⚠ " + risk));
      for (const note of notes) list.append(el("li", null, note));
      box.append(list);
    }
    if (role.s) box.append(split(role.s));
    if (role.k.length) {
      box.append(el("h3", null, `Kept (${role.k.length}) and the evidence`));
      const body = el("tbody");
      for (const [service, name, reason, count, last, sample, note, resources] of role.k) {
        body.append(el("tr", null,
          el("td", { className: "mono" }, `${data.services[service]}:${name}`),
          el("td", null, data.text[reason] + (note === null ? "" : `: ${data.text[note]}`)),
          el("td", { className: "num" }, count === null ? "" : count),
          el("td", null, last || ""),
          el("td", { className: "mono" }, sample || ""),
          el("td", { className: "mono" }, resources.join(", ")),
        ));
      }
      box.append(el("table", { className: "evidence kept" },
        el("thead", null, el("tr", null, ...["action", "why", "calls", "last seen", "sample event", "resources"]
          .map((h) => el("th", null, h)))), body));
    }
    if (role.r.length) {
      box.append(el("h3", null, `Removed (${role.removed} action(s)) and why`));
      // One row per group: the removed actions of one service with one evidence.
      const body = el("tbody");
      for (const g of role.r) {
        const [service, evidence, levels, names, unnamed] = group(g);
        const listed = names.join(", ") + (unnamed > 0
          ? ` and ${unnamed} more (\`whittle plan show ${plan.id} --format json\` lists them)` : "");
        body.append(el("tr", null,
          el("td", { className: "mono" }, data.services[service]),
          el("td", { className: "mono" }, listed),
          el("td", null, levels.map(([level, n]) => `${data.text[level]} ${n}`).join(", ")),
          el("td", null, data.text[evidence]),
        ));
      }
      box.append(el("table", { className: "evidence removed" },
        el("thead", null, el("tr", null, ...["service", "actions", "access level", "evidence"]
          .map((h) => el("th", null, h)))), body));
    }
    if (role.c.length) {
      box.append(el("h3", null, "Policy diff"));
      for (const [title, before, after] of role.c) {
        box.append(el("div", { className: "mono" }, `--- ${title}`));
        box.append(diff(before === null ? "" : data.docs[before], after === null ? "" : data.docs[after]));
      }
    }
    return box;
  }

  // The split proposal: per function its new role, what it keeps and loses compared with the
  // shared role; what stays on the shared role and the notes; its IaC in tabs.
  function split(s) {
    const box = el("section", { className: "split" });
    box.append(el("h3", null, `One role per function (${s.f.length} functions share this role)`));
    const body = el("tbody");
    for (const [fn, arn, roleName, fullName, kept, loses] of s.f) {
      body.append(el("tr", null,
        el("td", { className: "mono", title: arn }, fn),
        el("td", { className: "mono" }, roleName,
          fullName === null ? null : el("div", { className: "muted renamed" }, `not ${fullName} (see the notes)`)),
        el("td", { className: "mono" },
          kept.map(([service, name, reason]) => `${data.services[service]}:${name} (${data.text[reason]})`).join(", ")),
        el("td", { className: "mono" }, loses.length ? `${loses.length}: ${loses.join(", ")}` : "—"),
      ));
    }
    box.append(el("table", { className: "evidence split-functions" },
      el("thead", null, el("tr", null, ...["function", "new role", "keeps", "loses compared with the shared role"]
        .map((h) => el("th", null, h)))), body));
    if (s.keeps.length) {
      box.append(el("p", { className: "stays" }, "Stay on the shared role: ",
        el("span", { className: "mono" }, s.keeps.join(", "))));
    }
    const notes = texts(s.notes);
    if (notes.length) {
      const list = el("ul", { className: "split-notes" });
      for (const note of notes) list.append(el("li", null, note));
      box.append(list);
    }
    // The IaC, one tab at a time: built here, the texts are already in the page.
    const labels = ["Terraform", "CloudFormation", "serverless.yml"];
    const pre = el("pre", { className: "iac" });
    const tabs = el("div", { className: "tabs", role: "tablist" });
    const show = (i) => {
      for (const [j, tab] of [...tabs.children].entries()) tab.setAttribute("aria-selected", String(i === j));
      pre.textContent = data.docs[s.iac[i]];
    };
    labels.forEach((label, i) => {
      const tab = el("button", { type: "button", role: "tab" }, label);
      tab.addEventListener("click", () => show(i));
      tabs.append(tab);
    });
    box.append(tabs, pre);
    show(0);
    return box;
  }

  // A line diff (longest common subsequence), deletions before insertions as diff(1) shows a
  // replaced run; the same algorithm as the text and Markdown forms.
  function diff(before, after) {
    const a = before ? before.split("\n") : [];
    const b = after ? after.split("\n") : [];
    const width = b.length + 1;
    const lcs = new Uint32Array((a.length + 1) * width);
    for (let i = a.length - 1; i >= 0; i--) {
      for (let j = b.length - 1; j >= 0; j--) {
        lcs[i * width + j] = a[i] === b[j]
          ? lcs[(i + 1) * width + j + 1] + 1
          : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
      }
    }
    const pre = el("pre", { className: "diff" });
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
      if (i < a.length && j < b.length && a[i] === b[j]) {
        pre.append(el("span", { className: "ctx" }, "  " + a[i]));
        i++; j++;
      } else if (i < a.length && (j === b.length || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
        pre.append(el("span", { className: "del" }, "- " + a[i]));
        i++;
      } else {
        pre.append(el("span", { className: "ins" }, "+ " + b[j]));
        j++;
      }
    }
    return pre;
  }

  refresh();
})();
