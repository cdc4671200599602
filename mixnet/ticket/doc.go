// Package ticket is the contract of anonymous bandwidth tickets, shared by
// clients, gateways and directory authorities (a client links no authority
// server): the ticket and its spend, their encodings, verification at a
// gateway ([Issuers.Verify]), the client's ticketbook on disk ([Book]), the
// client's side of issuance ([Redeem]) and the gateway's side of redemption
// ([SendReport], [FetchSpent]).
//
// # Issuance
//
// A ticket is (type, expiry, key): the type says what it buys (a quota of
// bytes at one gateway), the expiry is a UTC day boundary 7–8 days after
// the issuance day (every ticket issued on one day carries the same
// expiry), and the key is an ed25519 public key the client makes for this
// ticket alone. Each authority of the network holds an RSA key per type and
// expiry day and publishes the public half in its vote; the consensus
// carries them ([directory.IssuerKey]). A voucher pays for a ticketbook
// ([Voucher]). The client blinds each ticket's message for each authority's
// key (RFC 9474, RSABSSA-SHA384-PSS-Deterministic), every authority checks
// the voucher and signs blind ([BlindSign]), and the client unblinds and
// keeps the tickets with at least k of the n signatures. Signatures are
// independent, not a threshold scheme: a ticket carries one per authority
// that signed.
//
// # Why RFC 9474 with a key per type and expiry
//
// The signer must see what it signs for: the type and expiry. Partially
// blind RSA (circl's blindsign/blindrsa/partiallyblindrsa, public metadata
// = type ‖ expiry) does that with one key, but measured here (2048-bit
// keys, this machine, 2 cores under other load; BenchmarkPBRSA vs
// BenchmarkRSA9474 in a scratch module, circl v1.6.5):
//
//	                      partially blind   RFC 9474
//	key generation        120 s             0.04–0.34 s  (safe primes vs ordinary)
//	client blind          1.60 ms           0.078 ms
//	authority sign        6.61 ms           3.39 ms
//	client finalize       2.12 ms           0.039 ms
//	verify (gateway)      2.11 ms           0.044 ms
//
// (Unblinded, an RFC 9474 signature is plain RSASSA-PSS: crypto/rsa
// verifies it in 29 µs, best of 20 runs, and Verify uses that.)
// Verification is what a gateway does for every spend anyone sends, before
// it knows the spend is worth anything, k times: 4.2 ms against 0.09 ms
// for k = 2 is the difference between a cheap and an expensive
// denial-of-service. Partially blind RSA's metadata-derived exponent is as
// long as half the modulus, so its public-key operation costs what a
// private one does; its safe-prime key generation takes minutes. So each
// authority makes ordinary RFC 9474 keys, one per (type, expiry day), a few
// days ahead, and the type and expiry are bound by which key signed. The
// price is key management (27 public keys of 294 bytes per authority in
// each consensus: 3 types × the 9 expiry days in use) and an anonymity set
// of one type and one issuance day, which the expiry rounding gives anyway;
// a gateway refuses an expiry off the day boundary, so colluding issuers
// cannot mark a client's tickets with one of their own.
//
// With these keys (BenchmarkIssueBook, BenchmarkVerifySpend; `make bench`)
// a 50-ticket book costs about 0.5 s of CPU with k = 2 (the client ~20 ms,
// each authority ~240 ms) and a gateway verifies a spend in 0.1–0.2 ms.
//
// # Unlinkability
//
// An authority sees the voucher and, per ticket, a blinded message: the
// ticket's message times r^e for an r it does not know (derived from a
// secret of the client's book), which is uniformly distributed whatever the
// ticket key. It stores the voucher, a hash of the blinded requests, their
// count and the time; never a serial, ticket key or unblinded signature
// (TestTicketIssuance in mixnet/authority dumps the authorities' databases
// after real issuances and checks). Each authority sees a differently blinded message, so the
// authorities cannot link their transcripts to each other either. A
// gateway sees the ticket (type, issuance day, key, signatures), which the
// signer never saw: a signature unblinded from a blinded one is
// independent of it, so no transcript of any authority names the spend.
// What is left to link is the type and the issuance day, shared by every
// ticket of that day; which authorities signed (all of them, unless one was
// down or refused at issuance: tickets bought during an outage form a
// smaller set); and timing: a client that redeems and spends at once
// on a quiet network is easier to guess. package tickettest's Dump lets
// end-to-end tests show that no value an authority stores appears in what a
// gateway stores.
//
// # Double spending
//
// A spend is bound to one gateway and a time within [SpendWindow] (30 s),
// by a signature of the ticket's key, so a spend seen by a gateway or an
// eavesdropper cannot be replayed elsewhere. A gateway keeps the serials it
// accepted and refuses them at once. Across gateways, each reports its new
// serials to every authority at least every report interval (30 s by
// default, at most a minute) and fetches back what others reported; a
// serial reported by two gateways comes back flagged Double, and every
// gateway refuses it from then on. The window is therefore one report
// interval plus one fetch: within it, a double spender can show one ticket
// at each gateway it can reach, getting at most one quota (200 or 500 MB)
// per gateway per ticket, and only until the next fetch, when the gateways
// that accepted it drop what is left of its quota. It cannot gain more
// than that: a ticket is worth at most its quota at each gateway, and the
// serials stay refused until the ticket expires.
//
// # What each side does
//
// A client: [LoadBook], [Redeem] a voucher (then [Book.Save]), and per
// gateway connection [Book.Next] and [NewSpend] with the gateway's identity;
// [Book.SetLeft] records what the gateway says is left.
//
// A gateway: [IssuersFrom] on each verified consensus, [Issuers.Verify]
// on each spend, then its own spent set by [Ticket.Serial]; every report
// interval [SignReport] the new serials and [SendReport] them to every
// authority, and [FetchSpent] from each with the cursor it last got,
// refusing every serial flagged Double.
//
// An authority (package mixnet/authority): [BlindSign] with its key for the
// request's type and expiry, once per voucher; [Report.Check] and a spent
// list per authority.
//
// # Payment
//
// Vouchers stand where Nym takes a payment. A real deployment puts its
// payment behind the same interface: a payment processor mints a voucher
// at every authority (or each authority checks a payment proof instead of
// a voucher code) and hands the code to the buyer; nothing else changes.
// One voucher yields one ticketbook: each authority signs a voucher's
// request once (a retry with the same blinded messages gets the same
// answer), and since k > n/2 no two disjoint sets of k authorities exist.
package ticket
