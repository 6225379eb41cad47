-- A terminal's static QRIS payload (validated by the gateway before it is stored): the
-- base of the dynamic QR codes made for the terminal's orders.
ALTER TABLE terminals ADD COLUMN static_qris TEXT;
