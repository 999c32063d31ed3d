"""Athena for the emulator: the SQL a client sends is executed, over the trail files in S3.

moto's Athena records a query and returns only results seeded through
`POST /moto-api/static/athena/query-results`, so a query that would fail in Athena (a misspelt
column, a Trino function used wrongly, a partition predicate that drops a day) passes. This
module runs it instead:

- `CREATE EXTERNAL TABLE` DDL sent through StartQueryExecution registers a table, as a user
  creates AWS's documented CloudTrail table: the columns (Hive types: the nested
  `useridentity` struct with `sessioncontext.sessionissuer`, the `resources` array of structs,
  `requestparameters` as a JSON string, ...), `PARTITIONED BY` columns, `LOCATION` and the
  partition-projection properties (`projection.*`, `storage.location.template` with
  `${column}` placeholders). `DROP TABLE` removes one.
- A SELECT is transpiled from Athena's dialect (Trino) to DuckDB's with sqlglot and run by
  DuckDB over the table's rows, read from the gzip CloudTrail files under the table's
  location in moto's S3. Partition pruning: the conjuncts of the WHERE clause that name only
  partition columns are evaluated per file against the partition values its key projects to,
  and only the files that can match are read; DataScannedInBytes is the bytes of those
  files (Athena bills the compressed bytes it reads).
- States: QUEUED, then RUNNING while a worker thread runs the query, then SUCCEEDED, FAILED
  (StateChangeReason as Athena words it: `TABLE_NOT_FOUND: line 1:N: Table
  'awsdatacatalog.db.t' does not exist`, `COLUMN_NOT_FOUND: line L:C: Column 'x' cannot be
  resolved`, `SYNTAX_ERROR: ...`) or CANCELLED.
- Results are written as CSV (header first, every value quoted, NULL as nothing) to
  `OUTPUT_LOCATION/ID.csv` in moto's S3, and paged by GetQueryResults (header row first,
  at most 1000 rows a page, NextToken) as Athena does.

The JSON SerDe of AWS's CloudTrail table maps JSON keys to columns case-insensitively
(`eventID` -> `eventid`, `userIdentity.sessionContext` -> `useridentity.sessioncontext`), and
a `string` column holding a JSON object (requestParameters) gets the object's JSON text; the
row builder below does the same.
"""

import csv
import gzip
import io
import json
import os
import re
import tempfile
import threading
import time
import uuid

# Executions this module ran, by id: moto never sees them.
EXECUTIONS = {}
# Tables registered by DDL: (account, region) -> {(database, table): Table}.
CATALOG = {}
LOCK = threading.Lock()

PAGE_MAX = 1000


def reset():
    with LOCK:
        EXECUTIONS.clear()
        CATALOG.clear()


# --- Hive types ---------------------------------------------------------------------------

def parse_type(text):
    """A Hive type as a tree: ("string",) / ("struct", [(name, type)]) / ("array", type) /
    ("map", key, value). Raises ValueError on what it cannot read."""
    pos = 0

    def skip():
        nonlocal pos
        while pos < len(text) and text[pos].isspace():
            pos += 1

    def word():
        nonlocal pos
        skip()
        start = pos
        while pos < len(text) and (text[pos].isalnum() or text[pos] in "_`"):
            pos += 1
        if start == pos:
            raise ValueError(f"type expected at {pos} in {text!r}")
        return text[start:pos].strip("`").lower()

    def expect(char):
        nonlocal pos
        skip()
        if pos >= len(text) or text[pos] != char:
            raise ValueError(f"{char!r} expected at {pos} in {text!r}")
        pos += 1

    def one():
        nonlocal pos
        name = word()
        if name == "struct":
            expect("<")
            fields = []
            while True:
                field = word()
                expect(":")
                fields.append((field, one()))
                skip()
                if text[pos] == ",":
                    pos += 1
                    continue
                expect(">")
                return ("struct", fields)
        if name == "array":
            expect("<")
            inner = one()
            expect(">")
            return ("array", inner)
        if name == "map":
            expect("<")
            key = one()
            expect(",")
            value = one()
            expect(">")
            return ("map", key, value)
        skip()
        if pos < len(text) and text[pos] == "(":  # decimal(10,2), varchar(20)
            pos = text.index(")", pos) + 1
        return (name,)

    tree = one()
    skip()
    if pos != len(text):
        raise ValueError(f"unexpected {text[pos:]!r} in type {text!r}")
    return tree


SCALARS = {
    "string": "VARCHAR", "varchar": "VARCHAR", "char": "VARCHAR", "boolean": "BOOLEAN",
    "bigint": "BIGINT", "int": "INTEGER", "integer": "INTEGER", "smallint": "SMALLINT",
    "tinyint": "TINYINT", "double": "DOUBLE", "float": "FLOAT", "date": "DATE",
    "timestamp": "TIMESTAMP", "decimal": "DOUBLE", "binary": "BLOB",
}


def duck_type(tree):
    kind = tree[0]
    if kind == "struct":
        return "STRUCT(" + ", ".join(f'"{n}" {duck_type(t)}' for n, t in tree[1]) + ")"
    if kind == "array":
        return duck_type(tree[1]) + "[]"
    if kind == "map":
        return f"MAP({duck_type(tree[1])}, {duck_type(tree[2])})"
    if kind not in SCALARS:
        raise ValueError(f"unsupported column type {kind}")
    return SCALARS[kind]


def convert(value, tree):
    """A JSON value as the SerDe reads it into a column of type `tree`."""
    if value is None:
        return None
    kind = tree[0]
    if kind == "struct":
        if not isinstance(value, dict):
            return None
        lower = {k.lower(): v for k, v in value.items()}
        return {n: convert(lower.get(n), t) for n, t in tree[1]}
    if kind == "array":
        if not isinstance(value, list):
            return None
        return [convert(v, tree[1]) for v in value]
    if kind == "map":
        if not isinstance(value, dict):
            return None
        return {str(k): convert(v, tree[2]) for k, v in value.items()}
    if kind in ("string", "varchar", "char"):
        if isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"))
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        return str(value).lower() == "true"
    if kind in ("bigint", "int", "integer", "smallint", "tinyint"):
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if kind in ("double", "float", "decimal"):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return value if isinstance(value, str) else json.dumps(value)


# --- DDL ----------------------------------------------------------------------------------

class Table:
    def __init__(self, database, name, columns, partitions, location, properties):
        self.database = database
        self.name = name
        self.columns = columns  # [(name, type tree)]
        self.partitions = partitions  # [(name, type tree)]
        self.location = location
        self.properties = properties

    def template(self):
        """The location template with `${column}` placeholders: the projection's, or the
        Hive layout (`LOCATION/col=value/...`) when projection is off."""
        template = self.properties.get("storage.location.template")
        if template and self.properties.get("projection.enabled", "").lower() == "true":
            return template.rstrip("/")
        base = self.location.rstrip("/")
        return "/".join([base] + [f"{n}=${{{n}}}" for n, _ in self.partitions])


def _split_top(text, sep=","):
    """Splits on `sep` outside <>, () and quotes."""
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "'\"`":
            quote = char
        elif char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        if char == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts


def _parenthesised(text, start):
    """The text inside the parentheses opening at text[start] and the index after them."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    raise ValueError("unbalanced parentheses")


def _columns(text):
    columns = []
    for part in _split_top(text):
        part = re.sub(r"\s+COMMENT\s+'[^']*'\s*$", "", part.strip(), flags=re.I)
        found = re.match(r"`?([A-Za-z_][A-Za-z0-9_]*)`?\s+(.+)$", part, re.S)
        if not found:
            raise ValueError(f"cannot read column definition {part!r}")
        columns.append((found.group(1).lower(), parse_type(found.group(2).strip())))
    return columns


def parse_ddl(sql, default_database):
    """A `CREATE EXTERNAL TABLE` statement as a Table. Raises ValueError."""
    head = re.match(
        r"\s*CREATE\s+EXTERNAL\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?((`?\w+`?)\.)?`?(\w+)`?\s*\(",
        sql, re.I)
    if not head:
        raise ValueError("expected CREATE EXTERNAL TABLE [db.]name (columns)")
    database = (head.group(3) or default_database or "default").strip("`").lower()
    name = head.group(4).lower()
    body, after = _parenthesised(sql, head.end() - 1)
    columns = _columns(body)
    rest = sql[after:]
    partitions = []
    found = re.search(r"PARTITIONED\s+BY\s*\(", rest, re.I)
    if found:
        inner, _ = _parenthesised(rest, found.end() - 1)
        partitions = _columns(inner)
    location = re.search(r"LOCATION\s+'([^']+)'", rest, re.I)
    if not location:
        raise ValueError("a CloudTrail table needs LOCATION 's3://bucket/prefix/'")
    properties = {}
    found = re.search(r"TBLPROPERTIES\s*\(", rest, re.I)
    if found:
        inner, _ = _parenthesised(rest, found.end() - 1)
        for key, value in re.findall(r"'([^']+)'\s*=\s*'([^']*)'", inner):
            properties[key.lower()] = value
    return Table(database, name, columns, partitions, location.group(1), properties), bool(head.group(1))


# --- Files and partitions -----------------------------------------------------------------

def _split_s3(url):
    found = re.match(r"s3://([^/]+)/?(.*)$", url)
    if not found:
        raise ValueError(f"{url} is not an s3:// location")
    return found.group(1), found.group(2)


def _bucket(account_id, name):
    from moto.s3.models import s3_backends
    from moto.s3.exceptions import MissingBucket
    try:
        return s3_backends[account_id]["aws"].get_bucket(name)
    except MissingBucket:
        return None


def table_files(account_id, table):
    """Every object under the table's template with its partition values: [(bucket, key,
    size, {partition: value})]. Values come from the key, as projection computes them."""
    template = table.template()
    bucket_name, key_template = _split_s3(template)
    bucket = _bucket(account_id, bucket_name)
    if bucket is None:
        return []
    names = [n for n, _ in table.partitions]
    pattern, last = "", 0
    order = []
    for found in re.finditer(r"\$\{(\w+)\}", key_template):
        pattern += re.escape(key_template[last:found.start()])
        column = found.group(1).lower()
        fmt = table.properties.get(f"projection.{column}.format", "")
        if table.properties.get(f"projection.{column}.type") == "date" and fmt:
            # yyyy/MM/dd and friends: each letter run is that many digits.
            pattern += "(" + re.sub(r"[yMdHms]+", lambda m: rf"\d{{{len(m.group(0))}}}", re.escape(fmt)) + ")"
        else:
            pattern += "([^/]+)"
        order.append(column)
        last = found.end()
    pattern += re.escape(key_template[last:])
    matcher = re.compile(pattern + "/")
    prefix = key_template.split("${", 1)[0]
    files = []
    for key, obj in list(bucket.keys.items()):
        if not key.startswith(prefix):
            continue
        found = matcher.match(key)
        if not found:
            continue
        values = dict(zip(order, found.groups()))
        # An enum projection holds only its listed values: Athena never looks elsewhere.
        if any(table.properties.get(f"projection.{c}.type") == "enum"
               and v not in [x.strip() for x in table.properties.get(f"projection.{c}.values", "").split(",")]
               for c, v in values.items()):
            continue
        files.append((bucket_name, key, obj.size, {n: values.get(n) for n in names}, obj))
    files.sort(key=lambda f: f[1])
    return files


def records_of(body):
    data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    doc = json.loads(data)
    return doc.get("Records", []) if isinstance(doc, dict) else []


# --- Execution ----------------------------------------------------------------------------

class AthenaFailure(Exception):
    """A query that Athena would fail, with its StateChangeReason."""


def _position(sql, needle):
    """Athena's `line L:C` of the first occurrence of `needle` (1-based), or 1:1."""
    found = re.search(r"(?<![A-Za-z0-9_])" + re.escape(needle) + r"(?![A-Za-z0-9_])", sql, re.I)
    index = found.start() if found else 0
    line = sql.count("\n", 0, index) + 1
    column = index - (sql.rfind("\n", 0, index) + 1) + 1
    return f"line {line}:{column}"


def _athena_message(sql, error):
    """A DuckDB error as Athena words the same mistake."""
    text = str(error)
    found = re.search(r'Referenced column "([^"]+)" not found', text) or re.search(
        r'Could not find key "([^"]+)" in struct', text) or re.search(
        r'Values list "[^"]*" does not have a column named "([^"]+)"', text)
    if found:
        name = found.group(1)
        return f"COLUMN_NOT_FOUND: {_position(sql, name)}: Column '{name}' cannot be resolved"
    found = re.search(r'Table with name (\S+) does not exist', text)
    if found:
        return f"TABLE_NOT_FOUND: {_position(sql, found.group(1))}: Table '{found.group(1)}' does not exist"
    found = re.search(r"Scalar Function with name (\w+) does not exist", text)
    if found:
        return f"FUNCTION_NOT_FOUND: {_position(sql, found.group(1))}: Function '{found.group(1)}' not registered"
    return "GENERIC_INTERNAL_ERROR: " + text.splitlines()[0]


def _partition_conjuncts(where, partition_names):
    """The top-level AND terms of a WHERE clause that reference only partition columns."""
    import sqlglot.expressions as exp
    terms = []

    def walk(node):
        if isinstance(node, exp.And):
            walk(node.left)
            walk(node.right)
        elif isinstance(node, exp.Paren):
            walk(node.this)
        else:
            terms.append(node)

    walk(where)
    kept = []
    for term in terms:
        columns = list(term.find_all(exp.Column))
        if columns and all(c.name.lower() in partition_names and not c.table for c in columns) \
                and not any(isinstance(n, exp.Subquery) for n in term.walk()):
            kept.append(term)
    return kept


def run_select(account_id, region, database, sql):
    """Runs a SELECT; returns (column names, column types, rows, bytes scanned)."""
    import duckdb
    import sqlglot
    import sqlglot.expressions as exp
    from sqlglot.errors import ParseError

    try:
        tree = sqlglot.parse_one(sql, read="trino")
    except ParseError as error:
        detail = error.errors[0] if error.errors else {}
        where = f"line {detail.get('line', 1)}:{detail.get('col', 1)}"
        raise AthenaFailure(f"SYNTAX_ERROR: {where}: {detail.get('description', str(error))}")
    with LOCK:
        tables = dict(CATALOG.get((account_id, region), {}))
    con = duckdb.connect()
    scanned = 0
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    seen = set()
    for ref in tree.find_all(exp.Table):
        name = ref.name.lower()
        if not ref.db and name in ctes:
            continue
        db = (ref.db or database or "default").lower()
        if (db, name) in seen:
            continue
        seen.add((db, name))
        table = tables.get((db, name))
        if table is None:
            raise AthenaFailure(
                f"TABLE_NOT_FOUND: {_position(sql, ref.name)}: Table 'awsdatacatalog.{db}.{name}' does not exist")
        # Partition pruning: the WHERE terms over partition columns only, per file.
        files = table_files(account_id, table)
        names = {n for n, _ in table.partitions}
        select = ref.find_ancestor(exp.Select)
        where = select.args.get("where") if select is not None else None
        terms = _partition_conjuncts(where.this, names) if where is not None else []
        if terms and files:
            con.execute("CREATE TEMP TABLE _parts (_i INTEGER, " + ", ".join(f'"{n}" VARCHAR' for n in sorted(names)) + ")")
            con.executemany(
                "INSERT INTO _parts VALUES (?" + ", ?" * len(names) + ")",
                [[i] + [f[3].get(n) for n in sorted(names)] for i, f in enumerate(files)])
            condition = " AND ".join(t.sql(dialect="duckdb") for t in terms)
            try:
                keep = {r[0] for r in con.execute(f"SELECT _i FROM _parts WHERE {condition}").fetchall()}
            except duckdb.Error as error:
                raise AthenaFailure(_athena_message(sql, error))
            con.execute("DROP TABLE _parts")
            files = [f for i, f in enumerate(files) if i in keep]
        columns = table.columns + table.partitions
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{db}"')
        # The rows go through newline-delimited JSON that DuckDB reads with the declared
        # types: inserting nested values row by row costs milliseconds a row.
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as rows_file:
            for _bucket_name, _key, size, values, obj in files:
                scanned += size
                for record in records_of(obj.value):
                    if not isinstance(record, dict):
                        continue
                    lower = {k.lower(): v for k, v in record.items()}
                    row = {n: convert(lower.get(n), t) for n, t in table.columns}
                    row.update({n: values.get(n) for n, _ in table.partitions})
                    rows_file.write(json.dumps(row, separators=(",", ":")))
                    rows_file.write("\n")
        try:
            spec = "{" + ", ".join(f"'{n}': '{duck_type(t)}'" for n, t in columns) + "}"
            con.execute(
                f'CREATE TABLE "{db}"."{name}" AS SELECT * FROM read_json(?, format = \'newline_delimited\', '
                f'columns = {spec})', [rows_file.name])
        finally:
            os.unlink(rows_file.name)
    con.execute(f'SET schema = \'{(database or "default").lower()}\'') if database else None
    try:
        # Trino's regexp_extract is NULL when the pattern does not match; DuckDB's is ''.
        duck = tree.transform(
            lambda n: exp.Nullif(this=n, expression=exp.Literal.string(""))
            if isinstance(n, exp.RegexpExtract) else n).sql(dialect="duckdb")
        cursor = con.execute(duck)
        out_rows = cursor.fetchall()
        description = cursor.description or []
    except duckdb.Error as error:
        raise AthenaFailure(_athena_message(sql, error))
    finally:
        con.close()
    names = [d[0] for d in description]
    types = [_athena_type(d[1]) for d in description]
    return names, types, out_rows, scanned


def _athena_type(duck):
    text = str(duck).upper()
    if text in ("BIGINT", "HUGEINT", "UBIGINT"):
        return "bigint"
    if text in ("INTEGER", "SMALLINT", "TINYINT"):
        return "integer"
    if text in ("DOUBLE", "FLOAT"):
        return "double"
    if text == "BOOLEAN":
        return "boolean"
    return "varchar"


def _text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_results(account_id, output_location, execution):
    """Writes the CSV Athena leaves at the output location; returns its s3:// URL."""
    bucket_name, prefix = _split_s3(output_location)
    bucket = _bucket(account_id, bucket_name)
    if bucket is None:
        raise AthenaFailure(
            f"Unable to verify/create output bucket {bucket_name}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    key = f"{prefix}{execution['id']}.csv"
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(execution["columns"])
    for row in execution["rows"]:
        # Athena writes NULL as an empty field without quotes.
        out.write(",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in row) + "\n")
    from moto.s3.models import s3_backends
    s3_backends[account_id]["aws"].put_object(bucket_name, key, out.getvalue().encode())
    return f"s3://{bucket_name}/{key}"


def _run(execution):
    started = time.time()
    execution["state"] = "RUNNING"
    try:
        names, types, rows, scanned = run_select(
            execution["account"], execution["region"], execution["database"], execution["query"])
        execution["columns"] = names
        execution["types"] = types
        execution["rows"] = [[_text(v) for v in row] for row in rows]
        execution["scanned"] = scanned
        execution["output"] = write_results(execution["account"], execution["output_location"], execution)
        if execution["state"] != "CANCELLED":
            execution["state"] = "SUCCEEDED"
    except AthenaFailure as failure:
        execution["state"] = "FAILED"
        execution["reason"] = str(failure)
    except Exception as error:  # an engine bug surfaces as Athena's internal error
        execution["state"] = "FAILED"
        execution["reason"] = f"GENERIC_INTERNAL_ERROR: {error}"
    execution["engine_ms"] = int((time.time() - started) * 1000)
    execution["completed"] = time.time()


def start(account_id, region, request, workgroup_output=None):
    """StartQueryExecution: (status, response document)."""
    query = request.get("QueryString", "")
    context = request.get("QueryExecutionContext") or {}
    database = (context.get("Database") or "default").lower()
    output_location = ((request.get("ResultConfiguration") or {}).get("OutputLocation")
                       or workgroup_output)
    execution = {
        "id": str(uuid.uuid4()), "account": account_id, "region": region, "query": query,
        "database": database, "workgroup": request.get("WorkGroup") or "primary",
        "output_location": output_location, "state": "QUEUED", "reason": None,
        "submitted": time.time(), "completed": None, "scanned": 0, "engine_ms": 0,
        "columns": [], "types": [], "rows": [], "output": None, "statement": "DML",
    }
    if re.match(r"\s*(CREATE\s+EXTERNAL\s+TABLE|DROP\s+TABLE)", query, re.I):
        execution["statement"] = "DDL"
        _ddl(execution)
    elif not output_location:
        return 400, {"__type": "InvalidRequestException",
                     "Message": "No output location provided. An output location is required either through the Workgroup result configuration setting or as an API input."}
    else:
        threading.Thread(target=_run, args=(execution,), daemon=True).start()
    with LOCK:
        EXECUTIONS[execution["id"]] = execution
    return 200, {"QueryExecutionId": execution["id"]}


def _ddl(execution):
    query, key = execution["query"], (execution["account"], execution["region"])
    try:
        dropped = re.match(r"\s*DROP\s+TABLE\s+(IF\s+EXISTS\s+)?((`?\w+`?)\.)?`?(\w+)`?", query, re.I)
        with LOCK:
            tables = CATALOG.setdefault(key, {})
            if dropped:
                name = ((dropped.group(3) or execution["database"]).strip("`").lower(), dropped.group(4).lower())
                if name not in tables and not dropped.group(1):
                    raise AthenaFailure(f"Table not found {name[1]}")
                tables.pop(name, None)
            else:
                table, if_not_exists = parse_ddl(query, execution["database"])
                name = (table.database, table.name)
                if name in tables and not if_not_exists:
                    raise AthenaFailure(f"AlreadyExistsException: Table {table.name} already exists")
                tables.setdefault(name, table) if if_not_exists else tables.__setitem__(name, table)
        execution["state"] = "SUCCEEDED"
    except (AthenaFailure, ValueError) as error:
        execution["state"] = "FAILED"
        execution["reason"] = f"FAILED: {error}" if isinstance(error, ValueError) else str(error)
    execution["completed"] = time.time()


def owns(query_id):
    with LOCK:
        return query_id in EXECUTIONS


def describe(query_id):
    """GetQueryExecution's document."""
    with LOCK:
        e = EXECUTIONS[query_id]
    status = {"State": e["state"], "SubmissionDateTime": e["submitted"]}
    if e["reason"]:
        status["StateChangeReason"] = e["reason"]
    if e["completed"]:
        status["CompletionDateTime"] = e["completed"]
    doc = {
        "QueryExecutionId": e["id"], "Query": e["query"], "StatementType": e["statement"],
        "QueryExecutionContext": {"Database": e["database"]}, "WorkGroup": e["workgroup"],
        "Status": status,
        "Statistics": {
            "DataScannedInBytes": e["scanned"], "EngineExecutionTimeInMillis": e["engine_ms"],
            "TotalExecutionTimeInMillis": int(((e["completed"] or time.time()) - e["submitted"]) * 1000),
        },
    }
    if e["output"] or e["output_location"]:
        doc["ResultConfiguration"] = {"OutputLocation": e["output"] or e["output_location"]}
    return {"QueryExecution": doc}


def results(query_id, request):
    """GetQueryResults: (status, document)."""
    with LOCK:
        e = EXECUTIONS[query_id]
    if e["state"] != "SUCCEEDED":
        return 400, {"__type": "InvalidRequestException",
                     "Message": f"Query has not yet finished. Current state: {e['state']}"}
    size = int(request.get("MaxResults") or PAGE_MAX)
    if not 1 <= size <= PAGE_MAX:
        return 400, {"__type": "InvalidRequestException", "Message": f"MaxResults must be between 1 and {PAGE_MAX}"}
    offset = int(request.get("NextToken") or 0)
    # The header row counts as a row of the first page, as in Athena.
    table = ([list(e["columns"])] if e["statement"] == "DML" else []) + e["rows"]
    page = table[offset:offset + size]
    doc = {
        "UpdateCount": 0,
        "ResultSet": {
            "Rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in page],
            "ResultSetMetadata": {"ColumnInfo": [
                {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": n, "Label": n,
                 "Type": t, "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": t == "varchar"}
                for n, t in zip(e["columns"], e["types"])]},
        },
    }
    if offset + size < len(table):
        doc["NextToken"] = str(offset + size)
    return 200, doc


def stop(query_id):
    with LOCK:
        e = EXECUTIONS[query_id]
        if e["state"] in ("QUEUED", "RUNNING"):
            e["state"] = "CANCELLED"
            e["completed"] = time.time()
    return 200, {}
