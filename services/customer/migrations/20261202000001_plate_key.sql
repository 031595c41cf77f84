-- Plates are found as typed: "b-ab 123", "BAB123" and "B AB 123" are all "B-AB 123". One
-- function is the normal form, so the index and every query agree on it: spaces, hyphens and
-- dots removed, then upper case (the database's collation folds letters beyond ASCII).
CREATE FUNCTION plate_key(plate TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT upper(regexp_replace(plate, '[[:space:].-]', '', 'g')) $$;

-- Finding a vehicle by its plate (ListVehicles' license_plate) looks the normal form up here.
CREATE INDEX vehicles_plate_key ON vehicles (plate_key(license_plate));

-- Stored VINs are not judged again: the check digit is enforced on new vehicles only, so a
-- VIN stored before it was enforced neither fails this migration nor blocks its vehicle's
-- edits; its decoding reports the mismatch (CHECK_DIGIT_INVALID).
