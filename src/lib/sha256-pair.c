/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 (FIPS 180-4) over the x86 SHA extensions, with a pass that
 * feeds the same blocks to two digests (see sha256-pair.h).  The portable
 * compression function below exists for the unit test's sake on other
 * machines: callers only use this file when sha256p_available().
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "sha256-pair.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* ---- portable ---- */

static inline uint32_t ror(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void blocks_c(uint32_t h[8], const uint8_t *p, size_t n)
{
	for (; n; n--, p += 64) {
		uint32_t w[64];
		for (size_t t = 0; t < 16; t++)
			w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 |
			       p[4 * t + 3];
		for (size_t t = 16; t < 64; t++) {
			uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
			uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
			w[t] = w[t - 16] + s0 + w[t - 7] + s1;
		}
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
		for (size_t t = 0; t < 64; t++) {
			uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
			uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
			hh = g;
			g = f;
			f = e;
			e = d + t1;
			d = c;
			c = b;
			b = a;
			a = t1 + t2;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
		h[5] += f;
		h[6] += g;
		h[7] += hh;
	}
}

/* ---- SHA extensions ---- */

#ifdef HAVE_SHA_NI
#define NI __attribute__((target("sha,sse4.1,ssse3")))

/* h[0..7] into the registers the rounds instruction works on: ABEF and
 * CDGH, A in the top lane. */
NI static inline void ni_load(const uint32_t h[8], __m128i *abef, __m128i *cdgh)
{
	__m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)&h[0]), 0xB1);
	__m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)&h[4]), 0x1B);
	*abef = _mm_alignr_epi8(dcba, efgh, 8);
	*cdgh = _mm_blend_epi16(efgh, dcba, 0xF0);
}

NI static inline void ni_store(uint32_t h[8], __m128i abef, __m128i cdgh)
{
	__m128i feba = _mm_shuffle_epi32(abef, 0x1B);
	__m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
	_mm_storeu_si128((__m128i *)(void *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
	_mm_storeu_si128((__m128i *)(void *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* The 16 groups of 4 schedule words of a block, plus the round constants. */
NI static inline void ni_schedule(const uint8_t *p, __m128i wk[16])
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i w[16];
	for (int j = 0; j < 4; j++)
		w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j)), bswap);
	for (int j = 4; j < 16; j++) {
		__m128i x = _mm_sha256msg1_epu32(w[j - 4], w[j - 3]);
		x = _mm_add_epi32(x, _mm_alignr_epi8(w[j - 1], w[j - 2], 4));
		w[j] = _mm_sha256msg2_epu32(x, w[j - 1]);
	}
	for (int j = 0; j < 16; j++)
		wk[j] = _mm_add_epi32(w[j], _mm_load_si128((const __m128i *)(const void *)&K[4 * j]));
}

NI static void blocks_ni(uint32_t h[8], const uint8_t *p, size_t n)
{
	__m128i s0, s1;
	ni_load(h, &s0, &s1);
	for (; n; n--, p += 64) {
		__m128i wk[16];
		ni_schedule(p, wk);
		__m128i save0 = s0, save1 = s1;
		for (int j = 0; j < 16; j++) {
			s1 = _mm_sha256rnds2_epu32(s1, s0, wk[j]);
			s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(wk[j], 0x0E));
		}
		s0 = _mm_add_epi32(s0, save0);
		s1 = _mm_add_epi32(s1, save1);
	}
	ni_store(h, s0, s1);
}

/* Schedule words j+1 (4j+4..4j+7) from those of j-3..j, held in w[] by
 * their number modulo 4: the slot of j-3 takes them. */
NI static inline __attribute__((always_inline)) __m128i ni_next(const __m128i w[4], int j)
{
	__m128i x = _mm_sha256msg1_epu32(w[(j + 1) & 3], w[(j + 2) & 3]);
	x = _mm_add_epi32(x, _mm_alignr_epi8(w[j & 3], w[(j + 3) & 3], 4));
	return _mm_sha256msg2_epu32(x, w[j & 3]);
}

/* The same blocks into two states: one schedule, two interleaved chains.
 * The schedule is made four words at a time between the rounds that use
 * the previous ones (the two chains leave the units it needs idle), not
 * ahead into memory as for one chain: 6% less time for the pair. */
NI static void blocks2_ni(uint32_t ha[8], uint32_t hb[8], const uint8_t *p, size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i a0, a1, b0, b1;
	ni_load(ha, &a0, &a1);
	ni_load(hb, &b0, &b1);
	for (; n; n--, p += 64) {
		__m128i w[4];
		for (int j = 0; j < 4; j++)
			w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j)), bswap);
		__m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1;
#pragma GCC unroll 16
		for (int j = 0; j < 16; j++) {
			__m128i wk = _mm_add_epi32(w[j & 3], _mm_load_si128((const __m128i *)(const void *)&K[4 * j]));
			__m128i hi = _mm_shuffle_epi32(wk, 0x0E);
			a1 = _mm_sha256rnds2_epu32(a1, a0, wk);
			b1 = _mm_sha256rnds2_epu32(b1, b0, wk);
			if (j >= 3 && j < 15)
				w[(j + 1) & 3] = ni_next(w, j);
			a0 = _mm_sha256rnds2_epu32(a0, a1, hi);
			b0 = _mm_sha256rnds2_epu32(b0, b1, hi);
		}
		a0 = _mm_add_epi32(a0, sa0);
		a1 = _mm_add_epi32(a1, sa1);
		b0 = _mm_add_epi32(b0, sb0);
		b1 = _mm_add_epi32(b1, sb1);
	}
	ni_store(ha, a0, a1);
	ni_store(hb, b0, b1);
}

/* blocks2_ni, and beside it other blocks q into a third state with a
 * schedule of their own: the three chains keep the rounds unit busier
 * than two, so that the third costs some 40% of a pass of its own
 * (measured on this kind of host: 0.13 s against 0.32 s per 400 MB). */
NI static void blocks3_ni(uint32_t ha[8], uint32_t hb[8], const uint8_t *p, uint32_t hc[8], const uint8_t *q, size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i a0, a1, b0, b1, c0, c1;
	ni_load(ha, &a0, &a1);
	ni_load(hb, &b0, &b1);
	ni_load(hc, &c0, &c1);
	for (; n; n--, p += 64, q += 64) {
		__m128i w[4], v[4];
		for (int j = 0; j < 4; j++) {
			w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j)), bswap);
			v[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(q + 16 * j)), bswap);
		}
		__m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1, sc0 = c0, sc1 = c1;
#pragma GCC unroll 16
		for (int j = 0; j < 16; j++) {
			__m128i k = _mm_load_si128((const __m128i *)(const void *)&K[4 * j]);
			__m128i wk = _mm_add_epi32(w[j & 3], k), vk = _mm_add_epi32(v[j & 3], k);
			a1 = _mm_sha256rnds2_epu32(a1, a0, wk);
			b1 = _mm_sha256rnds2_epu32(b1, b0, wk);
			c1 = _mm_sha256rnds2_epu32(c1, c0, vk);
			if (j >= 3 && j < 15) {
				w[(j + 1) & 3] = ni_next(w, j);
				v[(j + 1) & 3] = ni_next(v, j);
			}
			wk = _mm_shuffle_epi32(wk, 0x0E);
			vk = _mm_shuffle_epi32(vk, 0x0E);
			a0 = _mm_sha256rnds2_epu32(a0, a1, wk);
			b0 = _mm_sha256rnds2_epu32(b0, b1, wk);
			c0 = _mm_sha256rnds2_epu32(c0, c1, vk);
		}
		a0 = _mm_add_epi32(a0, sa0);
		a1 = _mm_add_epi32(a1, sa1);
		b0 = _mm_add_epi32(b0, sb0);
		b1 = _mm_add_epi32(b1, sb1);
		c0 = _mm_add_epi32(c0, sc0);
		c1 = _mm_add_epi32(c1, sc1);
	}
	ni_store(ha, a0, a1);
	ni_store(hb, b0, b1);
	ni_store(hc, c0, c1);
}

/* Two digests of different blocks, p into ha and q into hb, each with a
 * schedule of their own: two chains keep the rounds unit busy where one
 * waits on its latency (an index pass hashes its blob beside the
 * uncompressed stream this way). */
NI static void blocks_two_ni(uint32_t ha[8], const uint8_t *p, uint32_t hb[8], const uint8_t *q, size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i a0, a1, c0, c1;
	ni_load(ha, &a0, &a1);
	ni_load(hb, &c0, &c1);
	for (; n; n--, p += 64, q += 64) {
		__m128i w[4], v[4];
		for (int j = 0; j < 4; j++) {
			w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j)), bswap);
			v[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(q + 16 * j)), bswap);
		}
		__m128i sa0 = a0, sa1 = a1, sc0 = c0, sc1 = c1;
#pragma GCC unroll 16
		for (int j = 0; j < 16; j++) {
			__m128i k = _mm_load_si128((const __m128i *)(const void *)&K[4 * j]);
			__m128i wk = _mm_add_epi32(w[j & 3], k), vk = _mm_add_epi32(v[j & 3], k);
			a1 = _mm_sha256rnds2_epu32(a1, a0, wk);
			c1 = _mm_sha256rnds2_epu32(c1, c0, vk);
			if (j >= 3 && j < 15) {
				w[(j + 1) & 3] = ni_next(w, j);
				v[(j + 1) & 3] = ni_next(v, j);
			}
			wk = _mm_shuffle_epi32(wk, 0x0E);
			vk = _mm_shuffle_epi32(vk, 0x0E);
			a0 = _mm_sha256rnds2_epu32(a0, a1, wk);
			c0 = _mm_sha256rnds2_epu32(c0, c1, vk);
		}
		a0 = _mm_add_epi32(a0, sa0);
		a1 = _mm_add_epi32(a1, sa1);
		c0 = _mm_add_epi32(c0, sc0);
		c1 = _mm_add_epi32(c1, sc1);
	}
	ni_store(ha, a0, a1);
	ni_store(hb, c0, c1);
}
#endif

bool sha256p_available(void)
{
#ifdef HAVE_SHA_NI
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
		return false;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return (b & (1u << 29)) != 0; /* SHA */
#else
	return false;
#endif
}

static int use_ni = -1, use_vzeroupper = -1;

#ifdef HAVE_SHA_NI
/* The SHA extensions are legacy SSE: after AVX code that left the upper
 * halves of the vector registers dirty (ISA-L's deflate packing an index
 * pass's states on the same thread), each such instruction paid for them,
 * and the digests took two to three times as long.  A vzeroupper first
 * (on CPUs with AVX). */
__attribute__((target("avx"))) static void clear_upper(void)
{
	int v = __atomic_load_n(&use_vzeroupper, __ATOMIC_RELAXED);
	if (v < 0) {
		v = __builtin_cpu_supports("avx");
		__atomic_store_n(&use_vzeroupper, v, __ATOMIC_RELAXED);
	}
	if (v)
		_mm256_zeroupper();
}
#endif

/* Whether to use the SHA extensions: decided once (every thread decides
 * the same). */
static bool ni(void)
{
	int v = __atomic_load_n(&use_ni, __ATOMIC_RELAXED);
	if (v < 0) {
		v = sha256p_available();
		__atomic_store_n(&use_ni, v, __ATOMIC_RELAXED);
	}
	return v;
}

static void blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
#ifdef HAVE_SHA_NI
	if (ni()) {
		blocks_ni(h, p, n);
		return;
	}
#endif
	blocks_c(h, p, n);
}

static void blocks2(uint32_t ha[8], uint32_t hb[8], const uint8_t *p, size_t n)
{
#ifdef HAVE_SHA_NI
	if (ni()) {
		blocks2_ni(ha, hb, p, n);
		return;
	}
#endif
	blocks_c(ha, p, n);
	blocks_c(hb, p, n);
}

static void blocks3(uint32_t ha[8], uint32_t hb[8], const uint8_t *p, uint32_t hc[8], const uint8_t *q, size_t n)
{
#ifdef HAVE_SHA_NI
	if (ni()) {
		blocks3_ni(ha, hb, p, hc, q, n);
		return;
	}
#endif
	blocks_c(ha, p, n);
	blocks_c(hb, p, n);
	blocks_c(hc, q, n);
}

static void blocks_two(uint32_t ha[8], const uint8_t *p, uint32_t hb[8], const uint8_t *q, size_t n)
{
#ifdef HAVE_SHA_NI
	if (ni()) {
		blocks_two_ni(ha, p, hb, q, n);
		return;
	}
#endif
	blocks_c(ha, p, n);
	blocks_c(hb, q, n);
}

void sha256p_init(struct sha256p *s)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, iv, sizeof(iv));
	s->len = 0;
}

/* Fill s's partial block from data; returns the bytes taken. */
static size_t fill(struct sha256p *s, const uint8_t *p, size_t len)
{
	size_t have = s->len % 64;
	if (!have)
		return 0;
	size_t take = 64 - have < len ? 64 - have : len;
	memcpy(s->buf + have, p, take);
	s->len += take;
	if (have + take == 64)
		blocks(s->h, s->buf, 1);
	return take;
}

/* The bytes into a, and into b as well unless b is NULL (b at the same
 * offset modulo 64 as a): the partial block topped up, the whole blocks
 * in one pass, the tail kept for the next call.  With c (at a block
 * boundary), up to cmax bytes of q go into c beside the whole blocks, a
 * block for a block: returns the bytes c took. */
static size_t update(struct sha256p *a, struct sha256p *b, const uint8_t *p, size_t len, struct sha256p *c,
                     const uint8_t *q, size_t cmax)
{
	/* the partial blocks hold different bytes: each finishes its own,
	 * taking as many bytes as the other */
	size_t k = fill(a, p, len);
	if (b)
		fill(b, p, len);
	p += k;
	len -= k;
	if (!len)
		return 0;
	size_t n = len / 64, nc = c ? cmax / 64 : 0;
	if (nc > n)
		nc = n;
#ifdef HAVE_SHA_NI
	if (n && ni())
		clear_upper();
#endif
	if (nc && b)
		blocks3(a->h, b->h, p, c->h, q, nc);
	else if (nc)
		blocks_two(a->h, p, c->h, q, nc);
	if (n > nc && b)
		blocks2(a->h, b->h, p + 64 * nc, n - nc);
	else if (n > nc)
		blocks(a->h, p + 64 * nc, n - nc);
	memcpy(a->buf, p + 64 * n, len % 64);
	a->len += len;
	if (b) {
		memcpy(b->buf, a->buf, len % 64);
		b->len += len;
	}
	if (nc)
		c->len += 64 * nc;
	return 64 * nc;
}

void sha256p_update(struct sha256p *s, const void *data, size_t len)
{
	update(s, NULL, data, len, NULL, NULL, 0);
}

size_t sha256p_update_and(struct sha256p *a, const void *data, size_t len, struct sha256p *c, const void *cdata,
                          size_t cmax)
{
	if (c && c->len % 64)
		c = NULL;
	return update(a, NULL, data, len, c, cdata, cmax);
}

void sha256p_update2(struct sha256p *a, struct sha256p *b, const void *data, size_t len)
{
	sha256p_update2_and(a, b, data, len, NULL, NULL, 0);
}

size_t sha256p_update2_and(struct sha256p *a, struct sha256p *b, const void *data, size_t len, struct sha256p *c,
                           const void *cdata, size_t cmax)
{
	if (a->len % 64 != b->len % 64) {
		sha256p_update(a, data, len);
		sha256p_update(b, data, len);
		return 0;
	}
	if (c && c->len % 64)
		c = NULL;
	return update(a, b, data, len, c, cdata, cmax);
}

void sha256p_final(struct sha256p *s, uint8_t out[32])
{
	uint64_t bits = s->len * 8;
	size_t have = s->len % 64;
	s->buf[have++] = 0x80;
	if (have > 56) {
		memset(s->buf + have, 0, 64 - have);
		blocks(s->h, s->buf, 1);
		have = 0;
	}
	memset(s->buf + have, 0, 56 - have);
	for (int i = 0; i < 8; i++)
		s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
	blocks(s->h, s->buf, 1);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

void sha256p_final_digest(struct sha256p *s, char out[72])
{
	uint8_t d[32];
	sha256p_final(s, d);
	char *o = out + snprintf(out, 72, "sha256:");
	for (size_t i = 0; i < sizeof(d); i++)
		o += snprintf(o, 3, "%02x", d[i]);
}
