/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 with the x86 SHA extensions, for two digests of the same bytes
 * at once (internal to libocitree): an unpack hashes every file's content
 * twice, for the layer's diff_id and for the file's own digest (the
 * mtree), and file data starts at a 512-byte boundary of the tar stream,
 * so both digests see the same 64-byte blocks.  One pass computes each
 * block's message schedule once and runs the two round chains
 * interleaved: the rounds instruction's latency, not its throughput,
 * bounds a single chain.
 *
 * Only usable when sha256p_available() says so (an x86-64 CPU with
 * the SHA extensions and SSE4.1); callers use Nettle otherwise.
 */
#ifndef OCITREE_SHA256_PAIR_H
#define OCITREE_SHA256_PAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sha256p {
	uint32_t h[8];
	uint64_t len;    /* bytes hashed so far */
	uint8_t buf[64]; /* the partial block: len % 64 bytes */
};

/* Whether this CPU (and build) can run the functions below. */
bool sha256p_available(void);

void sha256p_init(struct sha256p *s);
void sha256p_update(struct sha256p *s, const void *data, size_t len);
/* The same bytes into a and b: in one pass while the two are at the same
 * offset modulo 64 (else one after the other). */
void sha256p_update2(struct sha256p *a, struct sha256p *b, const void *data, size_t len);
/* sha256p_update2(a, b, data, len), and in the same pass as many whole
 * blocks of cdata (at most cmax bytes) into c as it has whole blocks for
 * a and b, while c is at a block boundary: a third digest, of other
 * bytes (an unpack's blob, beside its content), for much less than a pass
 * of its own.  Returns the bytes c took, a multiple of 64 (c may be
 * NULL). */
size_t sha256p_update2_and(struct sha256p *a, struct sha256p *b, const void *data, size_t len, struct sha256p *c,
                           const void *cdata, size_t cmax);
/* The bytes into a, and beside its whole blocks as many whole blocks of
 * cdata (at most cmax bytes) into c, while c is at a block boundary: two
 * digests of different bytes (an index pass's uncompressed stream and
 * its blob) in about the time of one.  Returns the bytes c took, a
 * multiple of 64. */
size_t sha256p_update_and(struct sha256p *a, const void *data, size_t len, struct sha256p *c, const void *cdata,
                          size_t cmax);
/* The digest; s must be initialised again before further use. */
void sha256p_final(struct sha256p *s, uint8_t out[32]);
/* The same, as a digest string "sha256:<64 hex digits>" (71 bytes with
 * its NUL; OCITREE_DIGEST_MAX holds it). */
void sha256p_final_digest(struct sha256p *s, char out[72]);

#endif
