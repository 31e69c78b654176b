/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Merging layer indexes into the tree (see ocitree/tree.h).
 *
 * The merge works on a temporary name graph: one node per name (parent,
 * name, inode) in a flat array, found through a hash of (parent, name), and
 * one inode record per distinct file.  Each layer is applied in two passes:
 * its whiteouts first (they only ever hide lower layers, so applying them
 * before the layer's own entries is the OCI semantics whatever the order in
 * the tar), then its entries.  A name that is replaced or whited out is
 * marked dead and dropped from the hash; its subtree becomes unreachable.
 * The result is then compacted breadth-first into the final arrays.
 *
 * A merged tree is kept in the cache directory beside the layer indexes
 * (ocitree_tree_open_cached, the format below): a warm mount maps it
 * instead of merging again, which was a quarter of a warm mount's CPU.
 *
 * An overlay tree (OCITREE_TREE_OVERLAY) is one layer as an overlayfs lower
 * directory: its entries placed as they are, then its whiteouts turned into
 * what overlayfs reads, a whiteout inode in place of ".wh.NAME" and an
 * opaque mark on the directory of ".wh..wh..opq".
 */
#include "config.h"

#include <stdlib.h> /* for __GLIBC__ */
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include "layer-index-internal.h"
#include "ocitree/digest.h"
#include "ocitree/tree.h"
#include "util.h"

#define NONE UINT32_MAX
#define REF_LAYER_SHIFT 24
#define REF_ENTRY_MASK ((1u << REF_LAYER_SHIFT) - 1)
#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* what an inode of an overlay tree is besides its entry */
enum { KIND_PLAIN = 0, KIND_WHITEOUT, KIND_OPAQUE };

struct tinode {
	uint32_t ref;   /* layer << 24 | entry, NONE for a made-up directory */
	uint32_t nlink;
	uint32_t first; /* directories: first child in dirents */
	uint32_t count; /* directories: number of children */
};

struct tdirent {
	uint32_t name; /* offset in names */
	uint32_t ino;
};

struct ocitree_tree {
	struct ocitree_layer_index **layers;
	size_t n_layers;
	struct tinode *inodes; /* [0] unused: inode numbers start at 1 */
	uint32_t n_inodes;
	struct tdirent *dirents;
	uint32_t n_dirents;
	char *names;
	size_t names_len;
	uint8_t *kinds; /* overlay trees: KIND_* per inode; NULL otherwise */
	const char *opaque_xattr;
	void *map; /* a tree mapped from its cache file: the arrays point into it */
	size_t map_len;
};

/* ---- build-time graph ---- */

struct bnode {
	const char *name;
	uint32_t namelen;
	uint32_t parent;
	uint32_t ino;         /* index into binodes */
	uint32_t first_child; /* newest first */
	uint32_t next_sibling;
	uint32_t hnext; /* DEAD once killed (out of the hash for good) */
};

/* A node's hnext once it is dead: a bool of its own made the node 40 bytes
 * instead of 32, 0.7 MiB at the peak of a mount of node.  Node ids stay
 * below it: at most 255 layers of fewer than 2^24 entries. */
#define DEAD (NONE - 1)

static inline bool node_dead(const struct bnode *n)
{
	return n->hnext == DEAD;
}

struct binode {
	uint32_t ref;
	uint32_t final; /* final inode number, 0 until assigned */
	bool dir;
	uint8_t kind; /* KIND_* */
};

struct graph {
	struct ocitree_layer_index *const *layers;
	struct bnode *nodes;
	size_t n_nodes, cap_nodes;
	struct binode *inodes;
	size_t n_inodes, cap_inodes;
	uint32_t *buckets;
	size_t n_buckets;
	/* the parent of the previous entry, to skip walking the same path */
	char *last_dir;
	uint32_t last_dir_node;
};

static uint64_t key_hash(uint32_t parent, const char *name, size_t len)
{
	return hash_bytes(name, len) ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ULL);
}

/* Rebuild the hash with at least min buckets (and twice as many as before). */
static void rehash(struct graph *g, size_t min)
{
	size_t nb = g->n_buckets ? g->n_buckets * 2 : 4096;
	while (nb < min)
		nb *= 2;
	free(g->buckets);
	g->buckets = xmalloc(nb * sizeof(*g->buckets));
	memset(g->buckets, 0xff, nb * sizeof(*g->buckets));
	g->n_buckets = nb;
	for (uint32_t i = 0; i < g->n_nodes; i++) {
		struct bnode *n = &g->nodes[i];
		if (node_dead(n) || i == 0)
			continue;
		size_t b = key_hash(n->parent, n->name, n->namelen) & (nb - 1);
		n->hnext = g->buckets[b];
		g->buckets[b] = i;
	}
}

static uint32_t find_child(const struct graph *g, uint32_t parent, const char *name, size_t len)
{
	size_t b = key_hash(parent, name, len) & (g->n_buckets - 1);
	for (uint32_t i = g->buckets[b]; i != NONE; i = g->nodes[i].hnext) {
		const struct bnode *n = &g->nodes[i];
		if (n->parent == parent && n->namelen == len && memcmp(n->name, name, len) == 0)
			return i;
	}
	return NONE;
}

static uint32_t new_inode(struct graph *g, uint32_t ref, bool dir)
{
	GROW(g->inodes, g->cap_inodes, g->n_inodes + 1);
	g->inodes[g->n_inodes] = (struct binode){.ref = ref, .final = 0, .dir = dir, .kind = KIND_PLAIN};
	return (uint32_t)g->n_inodes++;
}

static uint32_t add_node(struct graph *g, uint32_t parent, const char *name, size_t len, uint32_t ino)
{
	GROW(g->nodes, g->cap_nodes, g->n_nodes + 1);
	uint32_t id = (uint32_t)g->n_nodes++;
	struct bnode *n = &g->nodes[id];
	*n = (struct bnode){.name = name, .namelen = (uint32_t)len, .parent = parent, .ino = ino,
			    .first_child = NONE, .next_sibling = NONE, .hnext = NONE};
	if (id != 0) {
		n->next_sibling = g->nodes[parent].first_child;
		g->nodes[parent].first_child = id;
		if (g->n_nodes > g->n_buckets)
			rehash(g, 0);
		else {
			size_t b = key_hash(parent, name, len) & (g->n_buckets - 1);
			n->hnext = g->buckets[b];
			g->buckets[b] = id;
		}
	}
	return id;
}

static void kill_node(struct graph *g, uint32_t id)
{
	struct bnode *n = &g->nodes[id];
	if (node_dead(n))
		return;
	size_t b = key_hash(n->parent, n->name, n->namelen) & (g->n_buckets - 1);
	for (uint32_t *pp = &g->buckets[b]; *pp != NONE; pp = &g->nodes[*pp].hnext) {
		if (*pp == id) {
			*pp = n->hnext;
			break;
		}
	}
	n->hnext = DEAD;
	/* the parent's list is filtered at compaction; a dead node's list is
	 * never walked again.  The cached directory may have been under it. */
	g->last_dir_node = NONE;
}

static bool node_is_dir(const struct graph *g, uint32_t id)
{
	return g->inodes[g->nodes[id].ino].dir;
}

/* The layer entry a node shows, or NULL for a made-up directory. */
static const struct ocitree_layer_entry *node_entry(const struct graph *g, uint32_t id)
{
	uint32_t ref = g->inodes[g->nodes[id].ino].ref;
	if (ref == NONE)
		return NULL;
	return ocitree_layer_index_entry(g->layers[ref >> REF_LAYER_SHIFT], ref & REF_ENTRY_MASK);
}

/* Walk dir (a normalised path, "" for the root) from the root.  With create
 * (entry names the entry being placed, for warnings), missing or
 * non-directory components become made-up directories. */
static uint32_t walk_dir(struct graph *g, const char *dir, size_t dirlen, const char *entry)
{
	bool create = entry != NULL;
	if (g->last_dir && g->last_dir_node != NONE && strlen(g->last_dir) == dirlen &&
	    memcmp(g->last_dir, dir, dirlen) == 0 && !node_dead(&g->nodes[g->last_dir_node]))
		return g->last_dir_node;
	uint32_t cur = 0;
	const char *p = dir, *end = dir + dirlen;
	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t len = slash ? (size_t)(slash - p) : (size_t)(end - p);
		uint32_t c = find_child(g, cur, p, len);
		if (c != NONE && !node_is_dir(g, c)) {
			if (!create)
				return NONE;
			/* a layer path goes through what is not a directory: unpack
			 * follows a symlink there (inside the root) or refuses; the
			 * view has no symlinks to follow while it is built */
			const struct ocitree_layer_entry *ce = node_entry(g, c);
			log_warn("entry '%s': '%.*s' is %s: a directory takes its place", entry, (int)(p + len - dir), dir,
				 ce && ce->type == OCITREE_ENTRY_SYMLINK ? "a symlink" : "not a directory");
			kill_node(g, c);
			c = NONE;
		}
		if (c == NONE) {
			if (!create)
				return NONE;
			c = add_node(g, cur, p, len, new_inode(g, NONE, true));
		}
		cur = c;
		p += len + (slash ? 1 : 0);
	}
	free(g->last_dir);
	g->last_dir = xstrndup(dir, dirlen);
	g->last_dir_node = cur;
	return cur;
}

static void split(const char *path, size_t *dirlen, const char **base)
{
	const char *s = strrchr(path, '/');
	if (s) {
		*dirlen = (size_t)(s - path);
		*base = s + 1;
	} else {
		*dirlen = 0;
		*base = path;
	}
}

static void apply_whiteout(struct graph *g, const char *path)
{
	size_t dirlen;
	const char *base;
	split(path, &dirlen, &base);
	uint32_t dir = walk_dir(g, path, dirlen, NULL);
	if (dir == NONE)
		return;
	if (strcmp(base, WH_OPAQUE) == 0) {
		for (uint32_t c = g->nodes[dir].first_child; c != NONE; c = g->nodes[c].next_sibling)
			kill_node(g, c);
		return;
	}
	const char *name = base + strlen(WH_PREFIX);
	uint32_t c = find_child(g, dir, name, strlen(name));
	if (c != NONE)
		kill_node(g, c);
}

static int apply_entry(struct graph *g, uint32_t layer, uint32_t i, const struct ocitree_layer_entry *e,
		       const char *path, bool raw)
{
	uint32_t ref = layer << REF_LAYER_SHIFT | i;
	bool dir = e->type == OCITREE_ENTRY_DIR;
	if (!*path) {
		/* the root itself: only a directory makes sense */
		if (dir)
			g->inodes[g->nodes[0].ino].ref = ref;
		else
			log_warn("entry '.': the root can only be a directory: ignored");
		return 0;
	}
	/* what no file system (and no FUSE lookup) can have */
	for (const char *c = path;;) {
		const char *end = strchrnul(c, '/');
		if (end - c > NAME_MAX) {
			log_warn("entry '%s': a name longer than %d bytes: ignored", path, NAME_MAX);
			return 0;
		}
		if (!*end)
			break;
		c = end + 1;
	}
	if (e->type == OCITREE_ENTRY_SYMLINK) {
		size_t tl = strlen(ocitree_layer_index_string(g->layers[layer], e->link));
		if (tl >= PATH_MAX) {
			log_warn("entry '%s': a symlink target of %zu bytes (PATH_MAX is %d): ignored", path, tl,
				 PATH_MAX);
			return 0;
		}
	}
	size_t dirlen;
	const char *base;
	split(path, &dirlen, &base);
	if (!raw && str_has_prefix(base, WH_PREFIX))
		return 0; /* applied in the first pass */
	uint32_t parent = walk_dir(g, path, dirlen, path);
	size_t len = strlen(base);
	uint32_t old = find_child(g, parent, base, len);
	uint32_t ino;
	if (e->type == OCITREE_ENTRY_HARDLINK) {
		const char *target = ocitree_layer_index_string(g->layers[layer], e->link);
		size_t tdl;
		const char *tbase;
		split(target, &tdl, &tbase);
		uint32_t tdir = walk_dir(g, target, tdl, NULL);
		uint32_t t = tdir == NONE ? NONE : find_child(g, tdir, tbase, strlen(tbase));
		if (t == NONE || node_is_dir(g, t)) {
			log_warn("hardlink '%s' to '%s': %s: ignored", path, target,
				 t == NONE ? "no such file in the image" : "a directory");
			return 0;
		}
		if (t == old)
			return 0;
		ino = g->nodes[t].ino;
	} else if (old != NONE && dir && node_is_dir(g, old)) {
		/* a directory again: new metadata, children kept */
		g->inodes[g->nodes[old].ino].ref = ref;
		return 0;
	} else {
		ino = new_inode(g, ref, dir);
	}
	if (old != NONE)
		kill_node(g, old);
	add_node(g, parent, base, len, ino);
	return 0;
}

/* An overlay tree's whiteout entry, after the layer's other entries are in
 * place.  The layer's own entry of the same name wins (OCI: a whiteout hides
 * lower layers only); when that entry is a directory, the whiteout means the
 * lower directory's contents are gone, which overlayfs says with an opaque
 * directory. */
static void apply_overlay_whiteout(struct graph *g, uint32_t i, const char *path)
{
	size_t dirlen;
	const char *base;
	split(path, &dirlen, &base);
	uint32_t dir = walk_dir(g, path, dirlen, path);
	if (strcmp(base, WH_OPAQUE) == 0) {
		g->inodes[g->nodes[dir].ino].kind = KIND_OPAQUE;
		return;
	}
	const char *name = base + strlen(WH_PREFIX);
	size_t len = strlen(name);
	if (!len || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		log_warn("entry '%s': a whiteout of no name: ignored", path);
		return;
	}
	uint32_t c = find_child(g, dir, name, len);
	if (c != NONE) {
		if (node_is_dir(g, c))
			g->inodes[g->nodes[c].ino].kind = KIND_OPAQUE;
		return;
	}
	uint32_t ino = new_inode(g, i, false);
	g->inodes[ino].kind = KIND_WHITEOUT;
	add_node(g, dir, name, len, ino);
}

/* Tell each layer which of its entries t shows: read-ahead skips the data
 * of files the tree hides. */
static void mark_shown(const struct ocitree_tree *t)
{
	size_t n = t->n_layers;
	uint8_t **shown = xcalloc(n ? n : 1, sizeof(*shown));
	for (size_t l = 0; l < n; l++)
		shown[l] = xcalloc(1, ocitree_layer_index_count(t->layers[l]) / 8 + 1);
	for (uint32_t i = 1; i <= t->n_inodes; i++) {
		uint32_t ref = t->inodes[i].ref;
		if (ref != NONE) {
			uint32_t entry = ref & REF_ENTRY_MASK;
			shown[ref >> REF_LAYER_SHIFT][entry / 8] |= (uint8_t)(1u << (entry % 8));
		}
	}
	for (size_t l = 0; l < n; l++) {
		layer_index_mark_live(t->layers[l], shown[l]);
		free(shown[l]);
	}
	free(shown);
}

static int cmp_dirent(const void *a, const void *b, void *arg)
{
	const char *names = arg;
	return strcmp(names + ((const struct tdirent *)a)->name, names + ((const struct tdirent *)b)->name);
}

OCITREE_EXPORT struct ocitree_tree *ocitree_tree_build(struct ocitree_layer_index *const *layers, size_t n,
						       unsigned flags, struct ocitree_error **err)
{
	if (n > 255)
		return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED, "%zu layers: at most 255 are supported", n),
		       NULL;
	bool raw = flags & OCITREE_TREE_RAW;
	bool overlay = flags & OCITREE_TREE_OVERLAY;
	if (overlay && (raw || n != 1))
		return ocitree_error_setk(err, OCITREE_ERROR_USAGE,
					  "an overlay tree is one layer as it is stored (%zu layers given)", n),
		       NULL;
	struct graph g = {.layers = layers, .last_dir_node = NONE};
	size_t total = 1;
	for (size_t l = 0; l < n; l++) {
		size_t c = ocitree_layer_index_count(layers[l]);
		if (c > REF_ENTRY_MASK)
			return ocitree_error_setk(err, OCITREE_ERROR_UNSUPPORTED,
						  "layer %zu has %zu entries: at most %u are supported", l + 1, c,
						  REF_ENTRY_MASK),
			       NULL;
		total += c;
	}
	GROW(g.nodes, g.cap_nodes, total);
	GROW(g.inodes, g.cap_inodes, total);
	rehash(&g, total); /* sized once: an entry is at most one node */
	add_node(&g, 0, "", 0, new_inode(&g, NONE, true));
	for (size_t l = 0; l < n; l++) {
		size_t c = ocitree_layer_index_count(layers[l]);
		if (!raw && !overlay) {
			for (size_t i = 0; i < c; i++) {
				const struct ocitree_layer_entry *e = ocitree_layer_index_entry(layers[l], i);
				const char *path = ocitree_layer_index_string(layers[l], e->path);
				const char *s = strrchr(path, '/');
				if (str_has_prefix(s ? s + 1 : path, WH_PREFIX))
					apply_whiteout(&g, path);
			}
		}
		for (size_t i = 0; i < c; i++) {
			const struct ocitree_layer_entry *e = ocitree_layer_index_entry(layers[l], i);
			apply_entry(&g, (uint32_t)l, (uint32_t)i, e, ocitree_layer_index_string(layers[l], e->path), raw);
		}
		for (size_t i = 0; overlay && i < c; i++) {
			const struct ocitree_layer_entry *e = ocitree_layer_index_entry(layers[l], i);
			const char *path = ocitree_layer_index_string(layers[l], e->path);
			const char *s = strrchr(path, '/');
			if (*path && str_has_prefix(s ? s + 1 : path, WH_PREFIX) && strlen(path) < PATH_MAX)
				apply_overlay_whiteout(&g, (uint32_t)i, path);
		}
	}
	free(g.last_dir);
	free(g.buckets);

	/* compact: breadth-first over live names, children sorted by name */
	struct ocitree_tree *t = xcalloc(1, sizeof(*t));
	t->layers = xmalloc((n ? n : 1) * sizeof(*t->layers));
	memcpy(t->layers, layers, n * sizeof(*layers));
	t->n_layers = n;
	size_t live = 0, names_len = 1;
	for (size_t i = 1; i < g.n_nodes; i++) {
		/* a node is live when it and all its ancestors are */
		const struct bnode *nd = &g.nodes[i];
		if (!node_dead(nd)) {
			live++;
			names_len += nd->namelen + 1;
		}
	}
	t->dirents = xmalloc((live ? live : 1) * sizeof(*t->dirents));
	t->names = xmalloc(names_len);
	t->names[0] = '\0';
	size_t nl = 1;
	/* queue of (bnode id) directories to expand, in final inode order */
	uint32_t *queue = xmalloc((g.n_inodes + 1) * sizeof(*queue));
	size_t qh = 0, qt = 0;
	size_t cap_inodes = 0;
	t->inodes = NULL;
	/* sized once: every inode of the graph is at most one of the tree
	 * (grown by doubling, the copies left holes of a megabyte in the
	 * heap of a mount of node, at the mount's peak) */
	GROW(t->inodes, cap_inodes, g.n_inodes + 2);
	memset(&t->inodes[0], 0, sizeof(t->inodes[0]));
	t->n_inodes = 1;
	g.inodes[g.nodes[0].ino].final = 1;
	t->inodes[1] = (struct tinode){.ref = g.inodes[g.nodes[0].ino].ref, .nlink = 2};
	if (overlay) {
		t->kinds = xcalloc(g.n_inodes + 2, 1);
		t->kinds[1] = g.inodes[g.nodes[0].ino].kind;
		t->opaque_xattr = flags & OCITREE_TREE_OVERLAY_USER ? "user.overlay.opaque" : "trusted.overlay.opaque";
	}
	queue[qt++] = 0;
	uint32_t nd_count = 0;
	while (qh < qt) {
		uint32_t dnode = queue[qh++];
		uint32_t dino = g.inodes[g.nodes[dnode].ino].final;
		uint32_t first = nd_count;
		for (uint32_t c = g.nodes[dnode].first_child; c != NONE; c = g.nodes[c].next_sibling) {
			const struct bnode *cn = &g.nodes[c];
			if (node_dead(cn))
				continue;
			t->dirents[nd_count].name = (uint32_t)nl;
			memcpy(t->names + nl, cn->name, cn->namelen);
			t->names[nl + cn->namelen] = '\0';
			nl += cn->namelen + 1;
			t->dirents[nd_count].ino = c; /* the bnode for now */
			nd_count++;
		}
		qsort_r(t->dirents + first, nd_count - first, sizeof(*t->dirents), cmp_dirent, t->names);
		uint32_t subdirs = 0;
		for (uint32_t k = first; k < nd_count; k++) {
			uint32_t c = t->dirents[k].ino;
			struct binode *bi = &g.inodes[g.nodes[c].ino];
			if (!bi->final) {
				GROW(t->inodes, cap_inodes, (size_t)t->n_inodes + 2);
				bi->final = ++t->n_inodes;
				t->inodes[bi->final] = (struct tinode){.ref = bi->ref, .nlink = bi->dir ? 2 : 0};
				if (t->kinds)
					t->kinds[bi->final] = bi->kind;
				if (bi->dir)
					queue[qt++] = c;
			}
			if (bi->dir)
				subdirs++;
			else
				t->inodes[bi->final].nlink++;
			t->dirents[k].ino = bi->final;
		}
		t->inodes[dino].first = first;
		t->inodes[dino].count = nd_count - first;
		t->inodes[dino].nlink = 2 + subdirs;
	}
	t->n_dirents = nd_count;
	t->names_len = nl;
	mark_shown(t);
	free(queue);
	free(g.nodes);
	free(g.inodes);
	/* give back what the estimates over-allocated */
	t->inodes = xrealloc(t->inodes, ((size_t)t->n_inodes + 1) * sizeof(*t->inodes));
	t->dirents = xrealloc(t->dirents, (nd_count ? nd_count : 1) * sizeof(*t->dirents));
	t->names = xrealloc(t->names, nl);
	if (t->kinds)
		t->kinds = xrealloc(t->kinds, (size_t)t->n_inodes + 1);
#ifdef __GLIBC__
	/* After an index pass glibc serves blocks of megabytes from the heap
	 * (its mmap threshold follows the largest block freed): the graph
	 * freed above would stay resident between the tree's blocks for the
	 * life of a mount. */
	(void)malloc_trim(0);
#endif
	return t;
}

/* ---- the cache file of a merged tree ----
 *
 * CACHE/tree-v1/sha256/HEX, HEX the SHA-256 of "ocitree tree v1", the flags
 * and the digests of the layers, lowest first.  Host byte order:
 *
 *   struct tree_file_header
 *   per layer    u32 entries, u32 the meta_crc of its index file (the tree
 *                names entries by number: another index of the same blob,
 *                as another program version may write, is another tree)
 *   inodes       (n_inodes + 1) * struct tinode ([0] unused)
 *   dirents      n_dirents * struct tdirent
 *   names        names_len bytes, the last one NUL
 *
 * crc is the CRC-32 of the header (with crc 0) and all that follows.  As
 * for index files, loading checks every number a reader follows besides the
 * checksum, and anything wrong makes the tree be merged again and the file
 * written anew.  Overlay trees (the layer store's) are not cached.
 */
#define TREE_MAGIC   "OCITTREE"
#define TREE_VERSION 1u
#define TREE_ENDIAN  0x01020304u
#define TREE_DIR     "tree-v1"

struct tree_file_header {
	char magic[8];
	uint32_t version, endian, flags, n_layers;
	uint32_t n_inodes, n_dirents;
	uint64_t names_len;
	uint32_t crc, pad;
};

struct tree_file_layer {
	uint32_t entries, meta_crc;
};

/* The file name of the tree of layers with flags (HEX above). */
static void tree_file_name(struct ocitree_layer_index *const *layers, size_t n, unsigned flags,
                           char out[OCITREE_DIGEST_MAX])
{
	struct ocitree_hasher *h = ocitree_hasher_new("sha256");
	char head[64];
	int len = snprintf(head, sizeof(head), "ocitree tree v%u\n%u\n", TREE_VERSION, flags);
	ocitree_hasher_update(h, head, (size_t)len);
	for (size_t l = 0; l < n; l++) {
		const char *d = ocitree_layer_index_digest(layers[l]);
		ocitree_hasher_update(h, d, strlen(d) + 1);
	}
	char digest[OCITREE_DIGEST_MAX];
	ocitree_hasher_final(h, digest);
	ocitree_hasher_free(h);
	snprintf(out, OCITREE_DIGEST_MAX, "%s", ocitree_digest_hex(digest));
}

static uint32_t tree_file_crc(const struct tree_file_header *h, const unsigned char *rest, size_t len)
{
	struct tree_file_header z = *h;
	z.crc = 0;
	return layer_index_crc(layer_index_crc(0, &z, sizeof(z)), rest, len);
}

void tree_file_seal(void *img, size_t len)
{
	struct tree_file_header h;
	if (len < sizeof(h))
		return;
	memcpy(&h, img, sizeof(h));
	h.crc = tree_file_crc(&h, (const unsigned char *)img + sizeof(h), len - sizeof(h));
	memcpy(img, &h, sizeof(h));
}

/* The tree of layers in the cache file name (in dirfd), or NULL with *why. */
static struct ocitree_tree *tree_load(int dirfd, const char *name, struct ocitree_layer_index *const *layers, size_t n,
                                      unsigned flags, const char **why)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	*why = "missing";
	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	*why = "malformed";
	if ((uint64_t)st.st_size < sizeof(struct tree_file_header))
		return NULL;
	size_t len = (size_t)st.st_size;
	/* every page is read by the checksum: all of them in one go */
	unsigned char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED)
		return NULL;
	struct tree_file_header h;
	memcpy(&h, map, sizeof(h));
	const struct tree_file_layer *fl = (const struct tree_file_layer *)(map + sizeof(h));
	uint64_t off_inodes = sizeof(h) + (uint64_t)h.n_layers * sizeof(*fl);
	uint64_t off_dirents = off_inodes + ((uint64_t)h.n_inodes + 1) * sizeof(struct tinode);
	uint64_t off_names = off_dirents + (uint64_t)h.n_dirents * sizeof(struct tdirent);
	if (memcmp(h.magic, TREE_MAGIC, 8) != 0 || h.endian != TREE_ENDIAN || h.version != TREE_VERSION) {
		*why = "of another format version";
		goto fail;
	}
	if (h.flags != flags || h.n_layers != n || h.n_inodes < 1 || h.n_inodes >= NONE || h.names_len < 1 ||
	    h.names_len > len || off_names + h.names_len != len)
		goto fail;
	if (tree_file_crc(&h, map + sizeof(h), len - sizeof(h)) != h.crc) {
		*why = "damaged (checksum)";
		goto fail;
	}
	for (size_t l = 0; l < n; l++) {
		if (fl[l].entries != ocitree_layer_index_count(layers[l]) || fl[l].meta_crc != layers[l]->meta_crc) {
			*why = "of other layer indexes";
			goto fail;
		}
	}
	const struct tinode *inodes = (const struct tinode *)(map + off_inodes);
	const struct tdirent *dirents = (const struct tdirent *)(map + off_dirents);
	const char *names = (const char *)(map + off_names);
	/* what a reader follows: entry numbers, child ranges, names */
	if (names[h.names_len - 1] != '\0')
		goto fail;
	for (uint32_t i = 1; i <= h.n_inodes; i++) {
		const struct tinode *in = &inodes[i];
		if ((in->ref != NONE && ((in->ref >> REF_LAYER_SHIFT) >= n ||
		                         (in->ref & REF_ENTRY_MASK) >= fl[in->ref >> REF_LAYER_SHIFT].entries)) ||
		    in->first > h.n_dirents || in->count > h.n_dirents - in->first)
			goto fail;
	}
	for (uint32_t i = 0; i < h.n_dirents; i++)
		if (dirents[i].ino < 1 || dirents[i].ino > h.n_inodes || dirents[i].name >= h.names_len)
			goto fail;
	struct ocitree_tree *t = xcalloc(1, sizeof(*t));
	t->layers = xmalloc((n ? n : 1) * sizeof(*t->layers));
	memcpy(t->layers, layers, n * sizeof(*layers));
	t->n_layers = n;
	/* read-only: a built tree is never written */
	t->inodes = (struct tinode *)(uintptr_t)inodes;
	t->n_inodes = h.n_inodes;
	t->dirents = (struct tdirent *)(uintptr_t)dirents;
	t->n_dirents = h.n_dirents;
	t->names = (char *)(uintptr_t)names;
	t->names_len = h.names_len;
	t->map = map;
	t->map_len = len;
	return t;
fail:
	munmap(map, len);
	return NULL;
}

/* Write t's cache file name (in dirfd). */
static int tree_save(int dirfd, const char *name, const struct ocitree_tree *t, unsigned flags,
                     struct ocitree_error **err)
{
	struct tree_file_header h = {.version = TREE_VERSION,
	                             .endian = TREE_ENDIAN,
	                             .flags = flags,
	                             .n_layers = (uint32_t)t->n_layers,
	                             .n_inodes = t->n_inodes,
	                             .n_dirents = t->n_dirents,
	                             .names_len = t->names_len};
	memcpy(h.magic, TREE_MAGIC, 8);
	size_t sz_layers = t->n_layers * sizeof(struct tree_file_layer);
	size_t sz_inodes = ((size_t)t->n_inodes + 1) * sizeof(*t->inodes);
	size_t sz_dirents = (size_t)t->n_dirents * sizeof(*t->dirents);
	size_t len = sizeof(h) + sz_layers + sz_inodes + sz_dirents + t->names_len;
	_cleanup_free_ unsigned char *buf = xmalloc(len);
	unsigned char *p = buf + sizeof(h);
	for (size_t l = 0; l < t->n_layers; l++) {
		struct tree_file_layer fl = {.entries = (uint32_t)ocitree_layer_index_count(t->layers[l]),
		                             .meta_crc = t->layers[l]->meta_crc};
		memcpy(p, &fl, sizeof(fl));
		p += sizeof(fl);
	}
	memcpy(p, t->inodes, sz_inodes);
	p += sz_inodes;
	memcpy(p, t->dirents, sz_dirents);
	p += sz_dirents;
	memcpy(p, t->names, t->names_len);
	h.crc = tree_file_crc(&h, buf + sizeof(h), len - sizeof(h));
	memcpy(buf, &h, sizeof(h));
	return write_file_nosync_at(dirfd, name, buf, len, 0644, err);
}

OCITREE_EXPORT struct ocitree_tree *ocitree_tree_open_cached(struct ocitree_layer_index *const *layers, size_t n,
                                                             unsigned flags, const char *cache_dir, bool rebuild,
                                                             struct ocitree_error **err)
{
	if (!cache_dir || (flags & OCITREE_TREE_OVERLAY) || n == 0 || n > 255)
		return ocitree_tree_build(layers, n, flags, err);
	for (size_t l = 0; l < n; l++)
		if (ocitree_layer_index_count(layers[l]) > REF_ENTRY_MASK)
			return ocitree_tree_build(layers, n, flags, err);
	char name[OCITREE_DIGEST_MAX];
	tree_file_name(layers, n, flags, name);
	struct ocitree_error *cerr = NULL;
	_cleanup_close_ int dirfd = layer_index_cache_subdir(cache_dir, TREE_DIR, "sha256", true, &cerr);
	if (dirfd < 0) {
		log_info("no cache of merged trees: %s", cerr->msg);
		ocitree_error_free(cerr);
		return ocitree_tree_build(layers, n, flags, err);
	}
	if (!rebuild) {
		const char *why = NULL;
		struct ocitree_tree *t = tree_load(dirfd, name, layers, n, flags, &why);
		if (t) {
			mark_shown(t);
			return t;
		}
		if (strcmp(why, "missing") != 0)
			log_info("cached merged tree %s is %s: merged again", name, why);
	}
	struct ocitree_tree *t = ocitree_tree_build(layers, n, flags, err);
	if (t && tree_save(dirfd, name, t, flags, &cerr) < 0) {
		log_info("cannot cache the merged tree: %s", cerr->msg);
		ocitree_error_free(cerr);
	}
	return t;
}

OCITREE_EXPORT void ocitree_tree_free(struct ocitree_tree *t)
{
	if (!t)
		return;
	free(t->layers);
	if (t->map) {
		munmap(t->map, t->map_len);
		free(t);
		return;
	}
	free(t->inodes);
	free(t->dirents);
	free(t->names);
	free(t->kinds);
	free(t);
}

OCITREE_EXPORT uint32_t ocitree_tree_inodes(const struct ocitree_tree *t)
{
	return t->n_inodes;
}

OCITREE_EXPORT size_t ocitree_tree_memory(const struct ocitree_tree *t)
{
	return sizeof(*t) + ((size_t)t->n_inodes + 1) * sizeof(*t->inodes) + t->n_dirents * sizeof(*t->dirents) +
	       t->names_len + t->n_layers * sizeof(*t->layers) + (t->kinds ? (size_t)t->n_inodes + 1 : 0);
}

OCITREE_EXPORT uint32_t ocitree_tree_lookup(const struct ocitree_tree *t, uint32_t dir, const char *name)
{
	if (dir < 1 || dir > t->n_inodes)
		return 0;
	const struct tinode *d = &t->inodes[dir];
	uint32_t lo = d->first, hi = d->first + d->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, t->names + t->dirents[mid].name);
		if (c == 0)
			return t->dirents[mid].ino;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

OCITREE_EXPORT uint32_t ocitree_tree_lookup_path(const struct ocitree_tree *t, const char *path)
{
	uint32_t cur = OCITREE_TREE_ROOT;
	_cleanup_free_ char *copy = xstrdup(path);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && cur; c = strtok_r(NULL, "/", &save))
		cur = ocitree_tree_lookup(t, cur, c);
	return cur;
}

OCITREE_EXPORT const struct ocitree_layer_entry *ocitree_tree_entry(const struct ocitree_tree *t, uint32_t ino,
								    struct ocitree_layer_index **layer)
{
	if (ino < 1 || ino > t->n_inodes || t->inodes[ino].ref == NONE)
		return NULL;
	uint32_t ref = t->inodes[ino].ref;
	struct ocitree_layer_index *l = t->layers[ref >> REF_LAYER_SHIFT];
	if (layer)
		*layer = l;
	return ocitree_layer_index_entry(l, ref & REF_ENTRY_MASK);
}

OCITREE_EXPORT int ocitree_tree_stat(const struct ocitree_tree *t, uint32_t ino, struct stat *st)
{
	if (ino < 1 || ino > t->n_inodes)
		return -1;
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = t->inodes[ino].nlink;
	st->st_blksize = 4096;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, ino, NULL);
	if (!e) {
		st->st_mode = S_IFDIR | 0755;
		return 0;
	}
	st->st_mode = e->mode;
	st->st_uid = e->uid;
	st->st_gid = e->gid;
	if (t->kinds && t->kinds[ino] == KIND_WHITEOUT) {
		/* what overlayfs takes for a whiteout: a 0/0 character device */
		st->st_mode = S_IFCHR;
		st->st_mtim.tv_sec = e->mtime;
		st->st_mtim.tv_nsec = e->mtime_nsec;
		st->st_atim = st->st_ctim = st->st_mtim;
		return 0;
	}
	if (e->type == OCITREE_ENTRY_SYMLINK) {
		struct ocitree_layer_index *l;
		ocitree_tree_entry(t, ino, &l);
		st->st_size = (off_t)strlen(ocitree_layer_index_string(l, e->link));
	} else {
		st->st_size = (off_t)e->size;
	}
	if (e->type == OCITREE_ENTRY_CHR || e->type == OCITREE_ENTRY_BLK)
		st->st_rdev = makedev(e->rdev_major, e->rdev_minor);
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim.tv_sec = e->mtime;
	st->st_mtim.tv_nsec = e->mtime_nsec;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
	return 0;
}

OCITREE_EXPORT uint32_t ocitree_tree_dir_size(const struct ocitree_tree *t, uint32_t dir)
{
	return dir >= 1 && dir <= t->n_inodes ? t->inodes[dir].count : 0;
}

OCITREE_EXPORT const char *ocitree_tree_dir_entry(const struct ocitree_tree *t, uint32_t dir, uint32_t i,
						  uint32_t *child)
{
	if (dir < 1 || dir > t->n_inodes || i >= t->inodes[dir].count)
		return NULL;
	const struct tdirent *d = &t->dirents[t->inodes[dir].first + i];
	if (child)
		*child = d->ino;
	return t->names + d->name;
}

OCITREE_EXPORT int ocitree_tree_read(const struct ocitree_tree *t, uint32_t ino, uint64_t off, size_t size,
				     struct ocitree_tree_data *d, struct ocitree_error **err)
{
	memset(d, 0, sizeof(*d));
	d->fd = -1;
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, ino, &l);
	if (!e || e->type != OCITREE_ENTRY_REG || (t->kinds && t->kinds[ino] == KIND_WHITEOUT)) {
		int r = ocitree_error_setk(err, OCITREE_ERROR_USAGE, "inode %u is not a regular file", ino);
		if (err)
			(*err)->errnum = !e || e->type == OCITREE_ENTRY_DIR ? EISDIR : EINVAL;
		return r;
	}
	if (off >= e->size)
		return 0;
	if (size > e->size - off)
		size = (size_t)(e->size - off);
	uint64_t base = 0;
	int fd = ocitree_layer_index_data_fd(l, &base);
	if (fd >= 0) {
		/* the data is in a plain file: the caller splices it */
		d->fd = fd;
		d->pos = base + e->data_off + off;
		d->size = size;
		return 0;
	}
	/* decoded data: point at the chunk cache, the kernel copying it once
	 * into the page cache */
	ssize_t n = ocitree_layer_index_pin(l, e->data_off + off, size, &d->pin, err);
	if (n < 0)
		return -1;
	if (n > 0) {
		memcpy(d->iov, d->pin.iov, d->pin.n * sizeof(*d->iov));
		d->n_iov = d->pin.n;
		d->size = (size_t)n;
		return 0;
	}
	d->buf = xmalloc(size ? size : 1);
	n = ocitree_layer_index_pread(l, d->buf, size, e->data_off + off, err);
	if (n < 0) {
		ocitree_tree_data_release(d);
		return -1;
	}
	d->iov[0] = (struct iovec){d->buf, (size_t)n};
	d->n_iov = 1;
	d->size = (size_t)n;
	return 0;
}

OCITREE_EXPORT void ocitree_tree_data_release(struct ocitree_tree_data *d)
{
	if (d->pin.n)
		ocitree_layer_index_unpin(&d->pin);
	free(d->buf);
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

OCITREE_EXPORT bool ocitree_tree_is_opaque(const struct ocitree_tree *t, uint32_t ino)
{
	return t->kinds && ino >= 1 && ino <= t->n_inodes && t->kinds[ino] == KIND_OPAQUE;
}

#define XATTR_OPAQUE_DONE 0x80000000u

OCITREE_EXPORT bool ocitree_tree_xattr_next(const struct ocitree_tree *t, uint32_t ino, uint32_t *cursor,
					    const char **name, const void **value, size_t *len)
{
	struct ocitree_layer_index *l = NULL;
	const struct ocitree_layer_entry *e = ocitree_tree_entry(t, ino, &l);
	if (*cursor & XATTR_OPAQUE_DONE)
		return false;
	while (e && ocitree_layer_entry_xattr_next(l, e, cursor, name, value, len)) {
		/* in an overlay lower directory, the overlay's own xattrs (redirects,
		 * metacopy, opaque) are for the store alone to say: a layer's are
		 * not passed on */
		if (t->kinds && (str_has_prefix(*name, "trusted.overlay.") || str_has_prefix(*name, "user.overlay.")))
			continue;
		return true;
	}
	if (ocitree_tree_is_opaque(t, ino)) {
		*cursor = XATTR_OPAQUE_DONE;
		*name = t->opaque_xattr;
		*value = "y";
		*len = 1;
		return true;
	}
	return false;
}
