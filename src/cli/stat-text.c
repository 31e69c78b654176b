/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ocitree stat's text: the manifest, config and history of an image in the
 * layout umoci 0.6's `umoci stat` prints (utils.go, ManifestStat.Format),
 * so that scripts which read umoci's output read ours.  Its quoting rules
 * are Go's strconv.Quote, its sizes go-units' HumanSize, its table
 * text/tabwriter's.
 */
#include "config.h"

#include "cli.h"

/* ---- Go's quoting ---- */

/* unicode.IsSpace */
static bool go_space(uint32_t r)
{
	return r == ' ' || (r >= '\t' && r <= '\r') || r == 0x85 || r == 0xa0 || r == 0x1680 ||
	       (r >= 0x2000 && r <= 0x200a) || r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000;
}

/* strconv.IsPrint, for the characters a config plausibly holds: controls,
 * the spaces other than ' ' and the format characters are not printable */
static bool go_print(uint32_t r)
{
	if (r < 0x20 || (r >= 0x7f && r < 0xa0))
		return false;
	if (r != ' ' && go_space(r))
		return false;
	return r != 0xad && !(r >= 0x200b && r <= 0x200f) && !(r >= 0x202a && r <= 0x202e) &&
	       !(r >= 0x2060 && r <= 0x206f) && r != 0xfeff && r != 0xfffe && r != 0xffff;
}

/* strconv.Quote(s) */
static void go_quote_always(struct buf *b, const char *s)
{
	buf_puts(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		uint32_t r;
		size_t n = utf8_decode((const char *)p, strnlen((const char *)p, 4), &r);
		if (n == 0) {
			buf_printf(b, "\\x%02x", *p++);
			continue;
		}
		p += n;
		if (r == '"' || r == '\\')
			buf_printf(b, "\\%c", (char)r);
		else if (go_print(r))
			buf_append(b, p - n, n);
		else if (r == '\a' || r == '\b' || r == '\f' || r == '\n' || r == '\r' || r == '\t' || r == '\v')
			buf_printf(b, "\\%c", "abtnvfr"[r == '\a' ? 0 : r == '\b' ? 1 : r == '\t' ? 2 : r == '\n' ? 3 :
							      r == '\v' ? 4 : r == '\f' ? 5 : 6]);
		else if (r < ' ' || r == 0x7f)
			buf_printf(b, "\\x%02x", (unsigned)r);
		else if (r < 0x10000)
			buf_printf(b, "\\u%04x", (unsigned)r);
		else
			buf_printf(b, "\\U%08x", (unsigned)r);
	}
	buf_puts(b, "\"");
}

/* umoci's quote(): s as it is unless Go would escape something in it, or,
 * when precise, it is empty or holds a space */
static void go_quote(struct buf *b, const char *s, bool precise)
{
	_cleanup_buf_ struct buf q = BUF_INIT;
	go_quote_always(&q, s);
	bool plain = q.len == strlen(s) + 2 && memcmp(q.data + 1, s, strlen(s)) == 0;
	bool space = false;
	for (const unsigned char *p = (const unsigned char *)s; precise && *p;) {
		uint32_t r;
		size_t n = utf8_decode((const char *)p, strnlen((const char *)p, 4), &r);
		if (n && go_space(r))
			space = true;
		p += n ? n : 1;
	}
	if (!plain || (precise && (!*s || space)))
		buf_append(b, q.data, q.len);
	else
		buf_puts(b, s);
}

/* ---- umoci's pprint family ---- */

/* "PREFIXKEY: V1, V2" (values with a comma always quoted), or "PREFIXKEY:" */
static void pprint(FILE *f, const char *prefix, const char *key, const char *const *values, size_t n)
{
	_cleanup_buf_ struct buf b = BUF_INIT;
	buf_printf(&b, "%s%s:", prefix, key);
	for (size_t i = 0; i < n; i++) {
		buf_puts(&b, i ? ", " : " ");
		if (strchr(values[i], ','))
			go_quote_always(&b, values[i]);
		else
			go_quote(&b, values[i], true);
	}
	fprintf(f, "%s\n", b.data);
}

static void pprint1(FILE *f, const char *prefix, const char *key, const char *value)
{
	pprint(f, prefix, key, &value, 1);
}

static size_t strv_count(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static void pprint_slice(FILE *f, const char *prefix, const char *name, char *const *data)
{
	if (!strv_count(data)) {
		pprint1(f, prefix, name, "(empty)");
		return;
	}
	pprint(f, prefix, name, NULL, 0);
	for (size_t i = 0; data[i]; i++) {
		_cleanup_buf_ struct buf b = BUF_INIT;
		go_quote(&b, data[i], true);
		fprintf(f, "%s\t%s\n", prefix, b.data);
	}
}

/* the keys of m, sorted (Go's slices.Sorted(maps.Keys)) */
static char **sorted_keys(const struct ocitree_strmap *m)
{
	char **k = xcalloc(m->n + 1, sizeof(*k));
	memcpy(k, m->keys, m->n * sizeof(*k));
	qsort(k, m->n, sizeof(*k), strcmp_p);
	return k;
}

static void pprint_map(FILE *f, const char *prefix, const char *name, const struct ocitree_strmap *m)
{
	if (!m->n) {
		pprint1(f, prefix, name, "(empty)");
		return;
	}
	pprint(f, prefix, name, NULL, 0);
	_cleanup_free_ char **keys = sorted_keys(m);
	_cleanup_free_ char *inner = xasprintf("%s\t", prefix);
	for (size_t i = 0; i < m->n; i++) {
		_cleanup_buf_ struct buf k = BUF_INIT;
		go_quote(&k, keys[i], true);
		pprint1(f, inner, k.data, ocitree_strmap_get(m, keys[i]));
	}
}

static void pprint_set(FILE *f, const char *prefix, const char *name, const struct ocitree_strmap *m)
{
	_cleanup_free_ char **keys = sorted_keys(m);
	if (!m->n)
		pprint1(f, prefix, name, "(empty)");
	else
		pprint(f, prefix, name, (const char *const *)keys, m->n);
}

/* go-units HumanSize: four significant digits, decimal units, no space */
static void go_human_size(char *out, size_t len, int64_t size)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
	double v = (double)size;
	size_t u = 0;
	while (v >= 1000 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1000;
		u++;
	}
	snprintf(out, len, "%.4g%s", v, units[u]);
}

/* xxd's layout, as umoci prints embedded data: at most 256 bytes */
static void pprint_bytes(FILE *f, const char *prefix, const char *name, const char *b64)
{
	_cleanup_buf_ struct buf d = BUF_INIT;
	if (base64_decode(b64, &d) < 0 || !d.len) {
		pprint1(f, prefix, name, "(empty)");
		return;
	}
	fprintf(f, "%s%s: (%zu bytes)\n", prefix, name, d.len);
	size_t shown = d.len < 256 ? d.len : 256;
	const unsigned char *p = (const unsigned char *)d.data;
	for (size_t off = 0; off < shown; off += 16) {
		size_t n = shown - off < 16 ? shown - off : 16;
		char text[17];
		fprintf(f, "%s\t%.4zx: ", prefix, off);
		for (size_t i = 0; i < 16; i++) {
			if (i && i % 2 == 0)
				fputc(' ', f);
			if (i < n) {
				fprintf(f, "%.2x", p[off + i]);
				unsigned c = p[off + i];
				/* unicode.IsGraphic of the byte taken as a code point */
				text[i] = (char)((c >= 0x20 && c < 0x7f) || c >= 0xa0 ? c : '.');
			} else {
				fputs("  ", f);
			}
		}
		text[n] = '\0';
		fprintf(f, "  %s\n", text);
	}
	if (d.len > shown)
		fprintf(f, "%s\t....  (extra %zu bytes omitted)\n", prefix, d.len - shown);
}

static void pprint_platform(FILE *f, const char *prefix, const char *os, const char *os_version,
			    char *const *os_features, const char *arch, const char *variant)
{
	pprint(f, prefix, "Platform", NULL, 0);
	_cleanup_free_ char *in = xasprintf("%s\t", prefix);
	pprint1(f, in, "OS", os ? os : "");
	if (os_version && *os_version)
		pprint1(f, in, "OS Version", os_version);
	if (strv_count(os_features))
		pprint(f, in, "OS Features", (const char *const *)os_features, strv_count(os_features));
	_cleanup_buf_ struct buf a = BUF_INIT;
	go_quote(&a, arch ? arch : "", true);
	if (variant && *variant) {
		buf_puts(&a, " (");
		go_quote(&a, variant, false);
		buf_puts(&a, ")");
	}
	fprintf(f, "%sArchitecture: %s\n", in, a.data);
}

static void pprint_descriptor(FILE *f, const char *prefix, const struct ocitree_descriptor *d)
{
	pprint(f, prefix, "Descriptor", NULL, 0);
	_cleanup_free_ char *in = xasprintf("%s\t", prefix);
	pprint1(f, in, "Media Type", d->media_type ? d->media_type : "");
	if (d->artifact_type && *d->artifact_type)
		pprint1(f, in, "Artifact Type", d->artifact_type);
	pprint1(f, in, "Digest", d->digest);
	char size[32];
	go_human_size(size, sizeof(size), d->size);
	pprint1(f, in, "Size", size);
	/* umoci prints a descriptor's platform at the left margin
	 * (pprintPlatform(w, "", ...)); so do we */
	if (d->platform)
		pprint_platform(f, "", d->platform->os, d->platform->os_version, d->platform->os_features,
				d->platform->architecture, d->platform->variant);
	if (strv_count(d->urls))
		pprint_slice(f, in, "URLs", d->urls);
	if (d->annotations.n)
		pprint_map(f, in, "Annotations", &d->annotations);
	if (d->data && *d->data)
		pprint_bytes(f, in, "Data", d->data);
}

/* a stored time as umoci prints it (Go's time.Format with RFC 3339 and
 * nanoseconds): the offset kept, a zero offset "Z", the fraction trimmed */
static char *iso8601(const char *t)
{
	char *c = t ? ocitree_time_canonical(t) : NULL;
	return c ? c : xstrdup(t ? t : "");
}

static void print_manifest(FILE *f, const struct ocitree_image *img)
{
	const struct ocitree_manifest *m = img->manifest;
	char ver[16];
	snprintf(ver, sizeof(ver), "%d", m->schema_version);
	pprint1(f, "", "Schema Version", ver);
	pprint1(f, "", "Media Type", m->media_type ? m->media_type : "");
	if (m->artifact_type && *m->artifact_type)
		pprint1(f, "", "Artifact Type", m->artifact_type);
	pprint(f, "", "Config", NULL, 0);
	pprint_descriptor(f, "\t", &m->config);
	if (m->n_layers) {
		pprint(f, "", "Layers", NULL, 0);
		for (size_t i = 0; i < m->n_layers; i++)
			pprint_descriptor(f, "\t", &m->layers[i]);
	}
	if (m->subject) {
		pprint(f, "", "Subject", NULL, 0);
		pprint_descriptor(f, "\t", m->subject);
	}
	if (m->annotations.n)
		pprint_map(f, "", "Annotations", &m->annotations);
	pprint_descriptor(f, "", &img->manifest_desc);
}

static void print_config(FILE *f, const struct ocitree_image *img)
{
	const struct ocitree_config *c = img->config;
	if (!c) {
		/* an artifact: its config shown by its descriptor only */
		pprint_descriptor(f, "", &img->manifest->config);
		return;
	}
	const struct ocitree_exec_config *x = &c->config;
	if (c->created) {
		_cleanup_free_ char *t = iso8601(c->created);
		pprint1(f, "", "Created", t);
	}
	pprint1(f, "", "Author", c->author ? c->author : "");
	pprint_platform(f, "", c->os, c->os_version, NULL, c->architecture, c->variant);
	pprint(f, "", "Image Config", NULL, 0);
	pprint1(f, "\t", "User", x->user ? x->user : "");
	if (strv_count(x->entrypoint))
		pprint_slice(f, "\t", "Entrypoint", x->entrypoint);
	pprint_slice(f, "\t", "Command", x->cmd);
	if (x->working_dir && *x->working_dir)
		pprint1(f, "\t", "Working Directory", x->working_dir);
	if (strv_count(x->env))
		pprint_slice(f, "\t", "Environment", x->env);
	if (x->stop_signal && *x->stop_signal)
		pprint1(f, "\t", "Stop Signal", x->stop_signal);
	if (x->exposed_ports.n)
		pprint_set(f, "\t", "Exposed Ports", &x->exposed_ports);
	if (x->volumes.n)
		pprint_set(f, "\t", "Volumes", &x->volumes);
	if (x->labels.n)
		pprint_map(f, "\t", "Labels", &x->labels);
	pprint_descriptor(f, "", &img->manifest->config);
}

/* text/tabwriter's width of a cell: UTF-8 characters */
static size_t cell_width(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static void print_history(FILE *f, const struct ocitree_image *img)
{
	const struct ocitree_config *c = img->config;
	const struct ocitree_manifest *m = img->manifest;
	size_t rows = c->n_history + 1, layer = 0;
	struct buf *cells = xcalloc(rows * 5, sizeof(*cells));
	const char *hdr[5] = {"LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"};
	for (int k = 0; k < 5; k++)
		buf_puts(&cells[k], hdr[k]);
	for (size_t i = 0; i < c->n_history; i++) {
		const struct ocitree_history *h = &c->history[i];
		struct buf *r = &cells[(i + 1) * 5];
		_cleanup_free_ char *t = iso8601(h->created);
		bool has_layer = !h->empty_layer && layer < m->n_layers;
		buf_puts(&r[0], has_layer ? m->layers[layer].digest : "<none>");
		go_quote(&r[1], t, false);
		go_quote(&r[2], h->created_by ? h->created_by : "", false);
		if (has_layer) {
			char size[32];
			go_human_size(size, sizeof(size), m->layers[layer].size);
			buf_puts(&r[3], size);
			layer++;
		} else {
			buf_puts(&r[3], "<none>");
		}
		go_quote(&r[4], h->comment ? h->comment : "", false);
	}
	/* tabwriter.NewWriter(w, 4, 2, 1, ' ', 0): each column as wide as its
	 * widest cell plus one, at least 4; the last column is not padded */
	size_t width[4];
	for (int k = 0; k < 4; k++) {
		width[k] = 4;
		for (size_t i = 0; i < rows; i++)
			if (cell_width(cells[i * 5 + k].data) + 1 > width[k])
				width[k] = cell_width(cells[i * 5 + k].data) + 1;
	}
	for (size_t i = 0; i < rows; i++) {
		for (int k = 0; k < 4; k++) {
			const char *s = cells[i * 5 + k].data;
			fprintf(f, "%s%*s", s, (int)(width[k] - cell_width(s)), "");
		}
		fprintf(f, "%s\n", cells[i * 5 + 4].data);
	}
	for (size_t i = 0; i < rows * 5; i++)
		buf_free(&cells[i]);
	free(cells);
}

/* ocitree's own section, after umoci's (which a script may read by
 * position): what the tag's image index offers, the one shown marked. */
static void print_platforms(FILE *f, const struct ocitree_image *img)
{
	fputs("\n== PLATFORMS ==\n", f);
	/* (an index nested in the tag's index has no digest of its own here) */
	if (img->index_is_root)
		fprintf(f, "Index: %s\n", img->root.digest);
	for (size_t i = 0; i < img->index->n_manifests; i++) {
		const struct ocitree_descriptor *d = &img->index->manifests[i];
		_cleanup_free_ char *p = d->platform ? ocitree_platform_format(d->platform) : xstrdup("(no platform)");
		fprintf(f, "  %s: %s%s\n", p, d->digest, i == img->index_pos ? " (shown)" : "");
	}
}

void stat_print_text(FILE *f, const struct ocitree_image *img)
{
	fputs("== MANIFEST ==\n", f);
	print_manifest(f, img);
	fputs("\n== CONFIG ==\n", f);
	print_config(f, img);
	if (img->config) {
		fputs("\n== HISTORY ==\n", f);
		print_history(f, img);
	}
	if (img->index)
		print_platforms(f, img);
}
