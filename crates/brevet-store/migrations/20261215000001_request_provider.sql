-- The provider instance a request's resource belongs to (`pg` of `pg:orders`), so the scheduler
-- can claim each provider's due work on its own (a provider held to a revocation rate limit must
-- not make the others' work wait behind its backlog). Written on insert by brevet-store; rows
-- stored before this column existed get it at connect (`Store::connect`), the ones still due
-- first. A NULL provider is still claimed (with the providers no lane names).
ALTER TABLE requests ADD COLUMN provider TEXT;
CREATE INDEX requests_provider_due ON requests (provider, due_at);
