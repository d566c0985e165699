-- campaign_and_outplan: what a tick reads, in one step: a campaign and its outplan.
-- ARGV: prefix, campaign id
-- Returns {campaign body or false, outplan body or false}: false for a campaign that is
-- gone, and for an outplan that is gone or another customer's.
return campaign_and_outplan(ARGV[2])
